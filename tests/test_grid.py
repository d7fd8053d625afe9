"""The study grid's cells: names, overrides that are valid params, and the kept-run command."""

from __future__ import annotations

from pathlib import Path

import yaml

from taloop.config import validate_params
from taloop.profiles import deep_merge

from .conftest import REPO, load_benchmark

grid = load_benchmark("grid")
run = load_benchmark("run")


def _params(overrides: list[str]) -> object:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    return validate_params(deep_merge(raw, run.overrides_dict(overrides)))


def test_map_cells_vary_error_rate_and_training_seeds_only() -> None:
    cells = grid.cells("map", [0, 3], [0.2, 0.4])
    assert [c.name for c in cells] == ["e0.2-s0", "e0.4-s0", "e0.2-s3", "e0.4-s3"]
    params = _params(cells[3].overrides)
    assert params.teacher.error_rate == 0.4
    assert (params.warmup.seed, params.signals.seed, params.stage2.seed) == (3, 3, 3)
    default = _params([])
    # Same items and teacher replies for every seed: only training seeds move.
    assert (params.data.seed, params.teacher.seed, params.eval.seed) == (
        default.data.seed, default.teacher.seed, default.eval.seed
    )  # fmt: skip
    assert params.compare == ["two_stage", "ta_loop", "oracle"] and params.eval.split == "test"
    assert params.signals.selection == grid.MAP_SELECTION == "as_listed"
    assert params.stage2.learning_rate == grid.TUNED_RATE == default.stage2.learning_rate


def test_tuning_cells_give_every_variant_the_same_learning_rates_on_validation() -> None:
    cells = grid.cells("tuning", [1], [])
    assert [c.name for c in cells] == ["lr0.001-s1", "lr0.002-s1", "lr0.0005-s1", "lr0.004-s1"]
    rates = set()
    for c in cells:
        params = _params(c.overrides)
        assert params.eval.split == "val" and params.compare == ["two_stage", "ta_loop"]
        rates.add(params.stage2.learning_rate)
    assert rates == set(grid.LEARNING_RATES)


def test_epochs_cells_tune_the_shared_step_count_at_the_tuned_rate_beside_the_tuning_cells() -> None:
    cells = grid.cells("epochs", [1], [])
    assert [c.name for c in cells] == ["ep2-lr0.002-s1", "ep4-lr0.002-s1"]
    default = _params([])
    tuning_twin = _params(next(c for c in grid.cells("tuning", [1], []) if c.name == "lr0.002-s1").overrides)
    for c, epochs in zip(cells, grid.EPOCHS, strict=True):
        params = _params(c.overrides)
        assert params.stage2.epochs == epochs != default.stage2.epochs
        # only the epochs differ from the tuning cell at the same rate and seed
        assert params.model_dump(exclude={"stage2"}) == tuning_twin.model_dump(exclude={"stage2"})
        stage2, twin_stage2 = params.stage2.model_dump(), tuning_twin.stage2.model_dump()
        assert {k for k in stage2 if stage2[k] != twin_stage2[k]} == {"epochs"}


def test_selection_cells_apply_the_signals_as_listed_on_validation_at_the_default_rate() -> None:
    cells = grid.cells("selection", [0, 1], [])
    assert [c.name for c in cells] == ["as_listed-lr0.002-s0", "as_listed-lr0.002-s1"]
    params, default = _params(cells[1].overrides), _params([])
    assert params.signals.selection == "as_listed" != default.signals.selection
    assert params.eval.split == "val" and params.compare == ["two_stage", "ta_loop"]
    # pinned, so a later default cannot change what a kept cell's name stands for; and one of
    # the tuning grid's rates
    assert "stage2.learning_rate=0.002" in cells[1].overrides and 0.002 in grid.LEARNING_RATES
    assert (params.warmup.seed, params.signals.seed, params.stage2.seed) == (1, 1, 1)


def test_a_cell_runs_the_benchmark_keeping_its_run_under_its_study() -> None:
    cell = grid.cells("map", [2], [0.3])[0]
    cmd = grid.command(cell)
    assert cmd[1] == str(REPO / "benchmarks/run.py")
    assert cmd[cmd.index("--keep") + 1] == str(REPO / "reports/studies/map/e0.3-s2")
    assert Path(cmd[cmd.index("--out") + 1]).parent == cell.out
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    assert sets == cell.overrides


def _map_twin(cell: object) -> object:
    """The map cell at the curve's error rate with the same training seeds."""
    params = _params(cell.overrides)
    twin = grid.cells("map", [params.stage2.seed], [grid.CURVE_ERROR_RATE])[0]
    return _params(twin.overrides)


def test_budget_cells_differ_from_their_map_twin_in_budget_and_variants_only() -> None:
    cells = grid.cells("budget", [0, 2], [0.4])  # the map's error rates do not move the curve
    assert [c.name for c in cells] == ["b48-e0.2-s0", "b96-e0.2-s0", "b48-e0.2-s2", "b96-e0.2-s2"]
    full = _params([]).budget.queries
    assert [_params(c.overrides).budget.queries / full for c in cells[:2]] == [0.25, 0.5]
    params, twin = _params(cells[3].overrides), _map_twin(cells[3])
    assert params.compare == ["ta_loop"] and twin.compare == ["two_stage", "ta_loop", "oracle"]
    assert params.model_dump(exclude={"budget", "compare"}) == twin.model_dump(exclude={"budget", "compare"})


def test_active_cells_differ_from_their_map_twin_in_acquisition_and_variants_only() -> None:
    cells = grid.cells("active", [1], [])
    assert [c.name for c in cells] == ["active-e0.2-s1"]
    params, twin = _params(cells[0].overrides), _map_twin(cells[0])
    assert (params.acquisition.mode, twin.acquisition.mode) == ("active", "random")
    assert params.compare == ["two_stage", "ta_loop"]
    assert params.model_dump(exclude={"acquisition", "compare"}) == twin.model_dump(
        exclude={"acquisition", "compare"}
    )


def test_the_reference_cell_is_the_default_run_kept_with_its_report() -> None:
    (cell,) = grid.cells("reference", [3], [0.4])  # seeds and error rates do not apply
    assert cell.overrides == [] and cell.out == grid.STUDIES / "reference/default"
    assert "--keep-report" in grid.command(cell)
    assert "--keep-report" not in grid.command(grid.cells("map", [0], [0.2])[0])
