"""The README's result tables say what bench/readme_results.json recorded (no training here: the runs
are recorded by ``python bench/readme_results.py run``, the README written by ``... render``)."""
import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_results", ROOT / "bench" / "readme_results.py")
readme_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_results)


def test_the_readme_tables_are_the_recorded_runs():
    text = (ROOT / "README.md").read_text()
    records = json.loads((ROOT / "bench" / "readme_results.json").read_text())
    assert readme_results.render(text, records) == text, \
        "README.md's result tables differ from bench/readme_results.json: run python bench/readme_results.py render"
    blocks = readme_results.readme_blocks(text)
    assert set(blocks) == set(readme_results.BLOCKS)
    for name, r in records.items():  # each number beside its command, commit and machine
        assert r["command"].startswith("retrograd ") and r["commit"] and r["machine"]["cores"] and r["wall_s"] > 0, name
        assert f"`{r['command']}`" in text and f"`{r['commit']}`" in text, name


def test_render_writes_the_numbers_of_the_records():
    text = ("to <!-- readme-results:quickstart -->x<!-- /readme-results:quickstart -->.\n"
            "<!-- readme-results:examples -->\nold\n<!-- /readme-results:examples -->\n"
            "<!-- readme-results:tune -->\n<!-- /readme-results:tune -->\n"
            "getting <!-- readme-results:vanishing -->x<!-- /readme-results:vanishing --> of\n")
    rec = {"command": "retrograd train examples/fashion_mlp.toml", "commit": "abc", "wall_s": 125.4,
           "started": "2026-01-02T03:04:05+00:00", "load_before": 3.5, "load_after": 4.0,
           "machine": {"cores": 2, "cpu": "CPU"},
           "results": {"test_accuracy": 0.8896, "epochs": 10, "samples_per_sec": 2345.6}}
    out = readme_results.render(text, {"fashion_mlp": rec})
    assert out.startswith("to <!-- readme-results:quickstart -->88.96 % test accuracy<!-- /readme-results:quickstart -->.\n")
    assert ("| `fashion_mlp.toml` | 88.96 % test accuracy | 10 | 2 min 05 s | 2,346 | "
            "`retrograd train examples/fashion_mlp.toml` | `abc` | 2 cores (CPU, load average 3.5 -> 4) |") in out
    assert ("| `fashion_cnn.toml` | not recorded yet (an earlier README said 90.2 % test accuracy in 4.7 min, commit "
            "unknown): `python bench/readme_results.py run fashion_cnn`") in out
    assert "(not recorded yet: `python bench/readme_results.py run tune_fashion_mlp`)" in out
    assert "vanishing -->~6e-8 (not recorded yet)<!--" in out
    vanishing = {**rec, "command": "retrograd train examples/vanishing_gradients_sigmoid.toml",
                 "results": {"first_layer_gradient_ratio": 5.8e-08}}
    assert ("vanishing -->~5.8e-08 (`retrograd train examples/vanishing_gradients_sigmoid.toml`, commit `abc`, seed 0)<!--"
            in readme_results.render(text, {"vanishing_gradients_sigmoid": vanishing}))
    assert readme_results.render(out, {"fashion_mlp": rec}) == out
