"""The platform: atomic writes, safe config-keyed checkpoints, results files, seeding, CLI."""
from __future__ import annotations

import io
import json
import os
import warnings

import nbformat
import pytest
import torch
from torch import nn

import mtl
from mtl import cache, cli, results, utils


class _Evil:
    """A non-tensor object: loading a pickle of it must be refused."""

    def __reduce__(self):
        return (os.getcwd, ())


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


# ---- atomic writes ---------------------------------------------------------------------------

def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    utils.atomic_write_bytes(target, b"old contents")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt("killed midway")

    monkeypatch.setattr(utils.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        utils.atomic_write_bytes(target, b"new contents that never land")
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"], "temporary file left behind"


def test_interrupted_checkpoint_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    config = {"width": 1}
    path = cache.checkpoint_path("net", config, directory=tmp_path)
    first = _model(0)
    cache.save_checkpoint(path, first.state_dict(), config, {"epochs": 1})

    def fail_fsync(fd):
        raise OSError("disk went away")

    monkeypatch.setattr(utils.os, "fsync", fail_fsync)
    with pytest.raises(OSError):
        cache.save_checkpoint(path, _model(1).state_dict(), config, {"epochs": 2})
    state, meta = cache.load_checkpoint(path, config)
    assert meta == {"epochs": 1}
    torch.testing.assert_close(state["weight"], first.weight.detach())


def test_interrupted_results_write_keeps_previous_results(tmp_path, monkeypatch):
    results.save_results("99_demo", {"auc": 0.5}, quick=False, directory=tmp_path)
    monkeypatch.setattr(utils.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        results.save_results("99_demo", {"auc": 0.9}, quick=False, directory=tmp_path)
    assert results.load_results("99_demo", directory=tmp_path)["auc"] == 0.5


# ---- checkpoints -------------------------------------------------------------------------------

def test_config_key_is_order_independent_and_sensitive():
    assert cache.config_key({"a": 1, "b": 2}) == cache.config_key({"b": 2, "a": 1})
    assert cache.config_key({"a": 1}) != cache.config_key({"a": 2})
    with pytest.raises(TypeError, match="plain data"):
        cache.config_key({"a": object()})


def test_load_or_train_trains_once_then_loads(tmp_path):
    calls = []

    def train(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(0.25)
        return {"history": [1.0, 0.5]}

    meta = cache.load_or_train("net", {"w": 1}, _model(), train, directory=tmp_path)
    assert meta["loaded"] is False and meta["history"] == [1.0, 0.5]
    fresh = _model(3)
    meta2 = cache.load_or_train("net", {"w": 1}, fresh, train, directory=tmp_path)
    assert meta2["loaded"] is True and meta2["history"] == [1.0, 0.5] and len(calls) == 1
    assert torch.all(fresh.weight == 0.25)
    cache.load_or_train("net", {"w": 1}, _model(), train, directory=tmp_path, retrain=True)
    assert len(calls) == 2


def test_corrupt_checkpoint_is_detected_and_retrained(tmp_path):
    config = {"w": 2}
    path = cache.checkpoint_path("net", config, directory=tmp_path)
    cache.save_checkpoint(path, _model().state_dict(), config)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, as by a crash
    with pytest.raises(cache.CheckpointError, match=str(path.name)):
        cache.load_checkpoint(path, config)
    trained = []
    with pytest.warns(RuntimeWarning, match="retraining"):
        cache.load_or_train("net", config, _model(), lambda m: trained.append(1) or {}, directory=tmp_path)
    assert trained == [1]
    cache.load_checkpoint(path, config)  # the replacement is sound


def test_pickled_non_tensor_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    buffer = io.BytesIO()
    torch.save({"format": cache.FORMAT_VERSION, "config": "{}", "state_dict": {"w": _Evil()}}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(cache.CheckpointError, match="cannot be loaded safely"):
        cache.load_checkpoint(path)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    path = tmp_path / "net.pt"
    cache.save_checkpoint(path, _model().state_dict(), {"w": 1})
    with pytest.raises(cache.CheckpointError, match="another config"):
        cache.load_checkpoint(path, {"w": 2})


def test_quick_checkpoints_never_land_in_the_committed_folder():
    quick = cache.checkpoint_path("net", {"w": 1}, quick=True)
    full = cache.checkpoint_path("net", {"w": 1}, quick=False)
    assert utils.QUICK_DIR in quick.parents and (utils.ROOT / "data") in full.parents


# ---- results -------------------------------------------------------------------------------------

def test_results_are_json_with_meta_and_quick_runs_write_elsewhere(tmp_path):
    import numpy as np

    path = results.save_results("99_demo", {"auc": np.float32(0.5), "curve": np.arange(3), "nan": float("nan")},
                                quick=True, directory=tmp_path)
    data = json.loads(path.read_text())
    assert data["auc"] == 0.5 and data["curve"] == [0, 1, 2] and data["nan"] is None
    assert data["_meta"]["quick"] is True
    assert results.results_path("01_siamfc", quick=True) != results.results_path("01_siamfc", quick=False)
    assert utils.QUICK_DIR in results.results_path("01_siamfc", quick=True).parents
    with pytest.raises(ValueError):
        results.results_path("../escape", quick=False)


# ---- seeding and devices ---------------------------------------------------------------------------

def test_same_seed_gives_same_tensors():
    mtl.seed_everything(123)
    a = (torch.randn(5), nn.Linear(4, 4).weight.detach().clone())
    rng_a = mtl.seed_everything(123).random(3)
    mtl.seed_everything(123)
    b = (torch.randn(5), nn.Linear(4, 4).weight.detach().clone())
    rng_b = mtl.seed_everything(123).random(3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and (rng_a == rng_b).all()
    mtl.seed_everything(124)
    assert not torch.equal(a[0], torch.randn(5))
    with pytest.raises(ValueError):
        mtl.seed_everything(-1)


def test_device_choice_and_quick_flag(monkeypatch):
    assert mtl.try_gpu("cpu").type == "cpu"
    assert mtl.try_gpu().type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            mtl.try_gpu("cuda")
    monkeypatch.setenv("MTL_QUICK", "1")
    assert mtl.quick_mode() is True
    monkeypatch.setenv("MTL_QUICK", "maybe")
    with pytest.raises(ValueError, match="MTL_QUICK"):
        mtl.quick_mode()


# ---- command line and reproduce --------------------------------------------------------------------

def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0 and "reproduce" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["reproduce", "--help"])
    assert exit_info.value.code == 0 and "--quick" in capsys.readouterr().out


def test_reproduce_runs_notebooks_and_reports(tmp_path, monkeypatch):
    from mtl import reproduce as rep

    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    params = nbformat.v4.new_code_cell("QUICK = None\nTRAIN = False\nDEVICE = 'auto'\nSEED = 0")
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "from mtl.results import save_results\n"
        f"save_results('00_demo', {{'quick': QUICK, 'tables': {{'t': [{{'seed': SEED}}]}}}}, quick=QUICK, "
        f"directory={str(tmp_path / 'res')!r})")
    nb = nbformat.v4.new_notebook(cells=[params, body])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nb_dir / "00_demo.ipynb")
    broken = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell("1/0")])
    broken.metadata["kernelspec"] = nb.metadata["kernelspec"]
    nbformat.write(broken, nb_dir / "01_broken.ipynb")
    monkeypatch.setattr(rep, "NOTEBOOK_DIR", nb_dir)

    report = rep.reproduce(quick=True, seed=7, out=tmp_path / "run", log=lambda *a: None)
    assert [e["status"] for e in report["notebooks"]] == ["ok", "failed"] and report["ok"] is False
    assert "ZeroDivisionError" in report["notebooks"][1]["error"]
    assert (tmp_path / "run" / "00_demo.ipynb").is_file() and (tmp_path / "run" / "report.md").is_file()
    stored = json.loads((tmp_path / "res" / "00_demo.json").read_text())
    assert stored["quick"] is True and stored["tables"]["t"] == [{"seed": 7}]
    with pytest.raises(ValueError, match="no notebook"):
        rep.list_notebooks(["42"])


def test_readme_reproduction_report_lists_every_finding_with_verdict_counts(tmp_path):
    from mtl.reproduce import README_END, README_START, update_readme_tables

    res = tmp_path / "results"
    res.mkdir()
    f = lambda claim, verdict, ci: {"claim": claim, "paper": "p", "split": "test", "ours": "+0.01 AUC", "ci": ci,  # noqa: E731
                                    "verdict": verdict}
    (res / "01_a.json").write_text(json.dumps({"findings": [f("A > B", "matches", [0.01, 0.05]),
                                                           f("C > D", "tie", [-0.02, 0.03])]}))
    (res / "02_b.json").write_text(json.dumps({"findings": [f("E > F", "does NOT match", [-0.09, -0.01])],
                                               "tables": {"t": [{"x": 1.5}]},
                                               "figures": {"a plot": "results/figures/02_b_plot.png"}}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nSTALE TABLE\n{README_END}\nend\n")
    assert update_readme_tables(["01_a", "02_b", "03_missing"], readme, results_dir=res)
    text = readme.read_text()
    assert "STALE TABLE" not in text and text.startswith("intro") and text.endswith("end\n")
    assert "3 paper claims tested** (1 matches, 1 tie, 1 does NOT match). 3 verdicts come from paired" in text
    rows = [line for line in text.splitlines() if line.startswith("| 0")]
    assert [r.split(" | ")[1] for r in rows] == ["A > B", "C > D", "E > F"]
    assert "| 02_b | E > F | p | test | +0.01 AUC | [-0.090, -0.010] | does NOT match |" in text
    assert text.index("Reproduction report") < text.index("**02_b — t**")
    assert text.index("**02_b — t**") < text.index("![a plot](results/figures/02_b_plot.png)")


def test_benchmark_tracker_options_parse_literals_and_reject_bad_pairs():
    assert cli._parse_options(["window_influence=0.3", "checkpoint=data/x.pt", "scales=[1, 2]"]) == {
        "window_influence": 0.3, "checkpoint": "data/x.pt", "scales": [1, 2]}
    for bad in (["novalue"], ["9bad=1"]):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            cli._parse_options(bad)


def test_stored_notebook_drops_papermill_injected_parameters(tmp_path):
    """A committed notebook must keep its default parameters, or the test command would run it in full mode."""
    from mtl.reproduce import store_executed_notebook

    params = nbformat.v4.new_code_cell("QUICK = None")
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell("# Parameters\nQUICK = False")
    injected.metadata["tags"] = ["injected-parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=[params, injected, nbformat.v4.new_code_cell("x = 1")]),
                   tmp_path / "run.ipynb")
    store_executed_notebook(tmp_path / "run.ipynb", tmp_path / "kept.ipynb")
    kept = nbformat.read(tmp_path / "kept.ipynb", as_version=4)
    assert [c.source for c in kept.cells] == ["QUICK = None", "x = 1"]


# ---- OpenMP idle-thread spin -------------------------------------------------------------------


def _openmp_report(code: str, **env) -> dict:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code + "; import json; print(json.dumps(mtl.openmp_spin()))"],
                         env={**_without_openmp_settings(), **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _without_openmp_settings() -> dict:
    """This process's environment without the OpenMP variables (pytest's own ``import mtl`` set them)."""
    names = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "MTL_SET_GOMP_SPINCOUNT")
    return {k: v for k, v in os.environ.items() if k not in names}


def test_openmp_spin_is_shortened_before_torch_loads_and_a_users_setting_wins():
    assert _openmp_report("import mtl") == {"GOMP_SPINCOUNT": "20000", "OMP_WAIT_POLICY": None,
                                            "set_by_mtl": True, "in_effect": True}
    # torch first: libgomp has read its environment already, and the report says so
    assert _openmp_report("import torch, mtl")["in_effect"] is False
    assert _openmp_report("import mtl", GOMP_SPINCOUNT="7") == {"GOMP_SPINCOUNT": "7", "OMP_WAIT_POLICY": None,
                                                                "set_by_mtl": False, "in_effect": True}
    passive = _openmp_report("import torch, mtl", OMP_WAIT_POLICY="PASSIVE")
    assert passive["GOMP_SPINCOUNT"] is None and passive["set_by_mtl"] is False and passive["in_effect"] is True
    # a child of a process where mtl set it (mtl reproduce's kernels): still mtl's, in effect in any import order
    child = _openmp_report("import torch, mtl", GOMP_SPINCOUNT="20000", MTL_SET_GOMP_SPINCOUNT="20000")
    assert child["set_by_mtl"] is True and child["in_effect"] is True


def test_openmp_spin_setting_does_not_change_the_boxes():
    import subprocess
    import sys

    code = ("import mtl, json, numpy as np, torch; from mtl.siamfc import SiamFCNet, SiamFCTracker; "
            "torch.set_num_threads(2); torch.manual_seed(0); t = SiamFCTracker(SiamFCNet(0.25)); "
            "base = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8); "
            "t.init(base, [60, 40, 30, 24]); "
            "print(json.dumps([t.update(np.roll(base, 3 * i, axis=1)).tolist() for i in range(1, 4)]))")
    boxes = [subprocess.run([sys.executable, "-c", code], env={**_without_openmp_settings(), **extra}, capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[-1]
             for extra in ({}, {"GOMP_SPINCOUNT": "0"}, {"GOMP_SPINCOUNT": "300000"})]
    assert boxes[0] == boxes[1] == boxes[2]
