"""Tuning the fitness weights with Optuna (`evolve tune`); the only module that imports optuna.

The objective never depends on the weights being tuned (else the study would optimise its own
definition of fitness). It is an *outcome* the engine measures independently of fitness — by
default `assess_gain`, how much a learner learns of the never-trained probe items over a fixed
budget, what it knew before excluded (`evolve/assess.py`):
- `offline` (default): replay evolutions recorded in MLflow. A trial's weights turn each recorded
  generation's signals into fitness with `fitness.combine` (the combiner `evolve run` uses); the
  score is the Spearman rank correlation between the parents' fitness and the mean outcome of their
  children in the next generation, averaged over every recorded generation of every evolution.
- `online`: each trial runs a short evolution under its weights; the score is the last
  generation's mean outcome minus generation 0's (the same seed in every trial, so generation 0 is
  the same and only selection differs). It is reported after every generation to a MedianPruner.

Outcomes are oriented (lower-is-better signals negated), so every objective is maximised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from common.errors import EvolveError
from evolve.records import LearnerRecord

if TYPE_CHECKING:
    from evolve.config import RunConfig
    from evolve.tracking import Tracker
    from evolve.tracking_store import Store

OBJECTIVES = {"speed": "assess_gain", "gain": "assess_gain", "auc": "assess_auc",
              "forgetting": "survival_at_end"}   # alias -> outcome signal
DEFAULT_STORAGE = "sqlite:///optuna.db"
MIN_PARENTS = 3   # a rank correlation over 2 points is always +-1: no evidence
CHUNK = 250       # offline trials run in memory, then go to the storage in one add_trials per chunk
SAMPLERS = ("tpe", "nsga2", "random")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def resolve_objectives(names: Sequence[str]) -> list[str]:
    """Objective names (aliases `speed`, `forgetting`, or any signal name) -> outcome signals."""
    from evolve.assess import NAMES as ASSESS_SIGNALS
    from evolve.config import check_signal

    out = []
    for name in names:
        sig = OBJECTIVES.get(name, name)
        if sig not in ASSESS_SIGNALS:
            try:
                check_signal(sig, "--objectives")
            except EvolveError as exc:
                raise EvolveError(f"{exc} (or an alias: {', '.join(OBJECTIVES)})") from None
        out.append(sig)
    if not out:
        raise EvolveError("--objectives is empty; pass e.g. --objectives speed or speed,forgetting")
    return out


def _oriented(name: str, v: float | None) -> float:
    """The outcome value with higher = better; NaN when undefined."""
    import fitness

    if v is None or not math.isfinite(v):
        return math.nan
    return float(v) if fitness.direction(name)[0] else -float(v)


def _mean_outcome(records: Sequence[LearnerRecord], outcome: str) -> float:
    """Mean oriented outcome of the non-failed learners with a defined value; NaN if none."""
    vals = [_oriented(outcome, r.signals.get(outcome)) for r in records if not r.failed]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def _ranks(x: np.ndarray) -> np.ndarray:
    """[n] average ranks, centred and scaled to unit norm (zeros when all equal)."""
    if len(x) <= 64:   # pairwise counts: 4x faster than scipy's rankdata at population sizes
        r = (x[:, None] > x[None, :]).sum(1) + ((x[:, None] == x[None, :]).sum(1) + 1) / 2
    else:
        from scipy.stats import rankdata

        r = rankdata(x)
    r = r - r.mean()
    norm = float(np.sqrt(np.sum(r * r)))
    return r / norm if norm > 0 else np.zeros_like(r)


@dataclass
class Block:
    """One recorded generation g of one evolution, with its parents' outcomes from generation g+1."""

    evolution: str
    generation: int
    table: dict[str, dict[str, float | None]]  # every learner of g: normalisation is over all
    failed: set[str]
    parents: list[str]                # non-failed learners of g with at least one child
    outcome: np.ndarray               # [n_parents, n_objectives] children's mean, oriented; nan=none
    basis: np.ndarray | None = None   # [n_parents, n_signals]: fitness = basis @ w (combine is linear)
    # per objective: (parent indices with an outcome, their outcome ranks) or None when < 3
    targets: list[tuple[np.ndarray, np.ndarray] | None] = field(default_factory=list)


def blocks_of(records: Sequence[LearnerRecord], evolution: str, outcomes: Sequence[str],
              ) -> list[Block]:
    """The replay blocks of one evolution: generation g's table and its children's outcomes."""
    by_gen: dict[int, list[LearnerRecord]] = {}
    for r in records:
        by_gen.setdefault(r.generation, []).append(r)
    out = []
    for g in sorted(by_gen):
        kids: dict[str, list[LearnerRecord]] = {}
        for child in by_gen.get(g + 1, []):
            for p in set(child.parents):
                kids.setdefault(p, []).append(child)
        failed = {r.learner_id for r in by_gen[g] if r.failed}
        parents = [r.learner_id for r in by_gen[g] if r.learner_id in kids and
                   r.learner_id not in failed]
        if len(parents) < MIN_PARENTS:
            continue
        outcome = np.array([[_mean_outcome(kids[p], o) for o in outcomes] for p in parents])
        out.append(Block(evolution, g, {r.learner_id: dict(r.signals) for r in by_gen[g]},
                         failed, parents, outcome.reshape(len(parents), len(outcomes))))
    return out


@dataclass
class Replay:
    """Recorded generations prepared once, so a trial costs one matmul and a ranking per block."""

    signals: list[str]
    objectives: list[str]           # outcome signal names
    normalise: str
    blocks: list[Block]
    runs: list[str]

    def __post_init__(self) -> None:
        import fitness

        rng = np.random.default_rng(0)
        for b in self.blocks:
            cols = [fitness.combine(b.table, {s: 1.0}, self.normalise, b.failed)
                    for s in self.signals]
            basis = np.array([[c[p] for c in cols] for p in b.parents])   # [n_parents, S]
            w = rng.uniform(0.1, 1.0, len(self.signals))
            full = fitness.combine(b.table, dict(zip(self.signals, w.tolist(), strict=True)),
                                   self.normalise, b.failed)
            # combine is a weighted sum of normalised columns: check it, else call it per trial
            linear = np.allclose([full[p] for p in b.parents], basis @ w, atol=1e-9)
            b.basis = basis if linear else None
            b.targets = []
            for k in range(len(self.objectives)):
                idx = np.flatnonzero(np.isfinite(b.outcome[:, k]))
                ok = len(idx) >= MIN_PARENTS and np.ptp(b.outcome[idx, k]) > 0
                b.targets.append((idx, _ranks(b.outcome[idx, k])) if ok else None)

    def usable(self, k: int) -> int:
        """How many blocks carry evidence for objective k."""
        return sum(b.targets[k] is not None for b in self.blocks)

    def parent_fitness(self, b: Block, weights: Mapping[str, float],
                       w: np.ndarray | None = None) -> np.ndarray:
        """[n_parents] the fitness `evolve run` would have given the parents under `weights`
        (`w`: the same weights as a vector in `signals` order)."""
        if b.basis is not None:
            if w is None:
                w = np.array([float(weights.get(s, 0.0)) for s in self.signals])
            return b.basis @ w
        import fitness

        fit = fitness.combine(b.table, dict(weights), self.normalise, b.failed)
        return np.array([fit[p] for p in b.parents])

    def score(self, weights: Mapping[str, float]) -> list[float]:
        """Per objective: mean Spearman correlation of parents' fitness with children's outcome."""
        sums, counts = np.zeros(len(self.objectives)), np.zeros(len(self.objectives))
        w = np.array([float(weights.get(s, 0.0)) for s in self.signals])
        for b in self.blocks:
            fit = self.parent_fitness(b, weights, w)
            for k, target in enumerate(b.targets):
                if target is not None:
                    idx, ry = target
                    sums[k] += float(_ranks(fit[idx]) @ ry)   # 0 when the fitness is constant
                    counts[k] += 1
        return [float(s / c) if c else 0.0 for s, c in zip(sums, counts, strict=True)]


def load_replay(tracker: Store, runs: Sequence[str] | None, signals: Sequence[str],
                objectives: Sequence[str], normalise: str = "rank") -> Replay:
    """Read the evolutions (default: all of the tracker's experiment) and prepare the replay."""
    known = tracker.evolution_runs()
    if not known:
        raise EvolveError(f"no recorded evolution in experiment {tracker.experiment!r} of "
                          f"{tracker.uri}; run `evolve run` first, or tune with --mode online")
    for r in runs or ():
        if r not in known:
            raise EvolveError(f"run {r} is not an evolution of experiment {tracker.experiment!r}; "
                              "pass an evolution run id (evolve run prints it) or set "
                              "tracking.experiment")
    runs = list(runs or known)
    blocks: list[Block] = []
    recorded: set[str] = set()
    for run in runs:
        records = tracker.load_records(run, curves=False)
        recorded.update(k for r in records for k, v in r.signals.items() if v is not None)
        blocks += blocks_of(records, run, objectives)
    missing = [s for s in signals if s not in recorded]
    if missing:
        raise EvolveError(f"signal {missing[0]!r} is not recorded by any learner of the "
                          f"{len(runs)} replayed run(s); recorded: {', '.join(sorted(recorded))}")
    replay = Replay(list(signals), list(objectives), normalise, blocks, runs)
    for k, o in enumerate(objectives):
        if not replay.usable(k):
            fix = ("with the assessment on (--set assess.every=1)" if o.startswith("assess_")
                   else f"whose learners record {o}")
            raise EvolveError(
                f"no recorded generation has >= {MIN_PARENTS} parents whose children differ in "
                f"{o}; record evolutions of >= 2 generations {fix}, or pick another objective")
    return replay


# --- the study ----------------------------------------------------------------------------------


def open_study(storage: str, name: str, n_objectives: int, settings: Mapping[str, Any],
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create or load (same name: continue) the study; its settings must match a loaded one's."""
    try:
        study = optuna.create_study(storage=_storage(storage), study_name=name, load_if_exists=True,
                                    directions=["maximize"] * n_objectives, pruner=pruner)
    except ValueError as exc:
        if "direction" in str(exc).lower():
            raise EvolveError(f"study {name!r} in {storage} has a different number of objectives; "
                              "pass its --objectives or a new --study NAME") from None
        raise EvolveError(f"cannot open the Optuna storage {storage}: {_line(exc)}; pass "
                          f"--storage {DEFAULT_STORAGE} or a reachable database URL") from None
    except Exception as exc:  # sqlalchemy errors, ImportError for a missing driver, ...
        raise EvolveError(f"cannot open the Optuna storage {storage}: {_line(exc)}; pass "
                          f"--storage {DEFAULT_STORAGE} or a reachable database URL") from None
    old = study.user_attrs.get("evolve")
    if old is None:
        study.set_user_attr("evolve", dict(settings))
    elif old != dict(settings):
        diff = next(k for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k))
        raise EvolveError(f"study {name!r} was run with {diff}={old.get(diff)!r}, not "
                          f"{settings.get(diff)!r}; pass the same settings or a new --study NAME")
    return study


def _storage(url: str) -> str | optuna.storages.BaseStorage:
    """A database URL as is; a plain file path is an Optuna journal file (add_trials: 8 ms a
    trial against SQLite's 55 ms on a busy 2-core box; optuna-dashboard opens both)."""
    if "://" in url:
        return url
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(url))


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def sampler_for(name: str, study: optuna.Study, seed: int) -> optuna.samplers.BaseSampler:
    """`tpe`, `nsga2` or `random`, seeded by the run seed and the study's trial count (a resumed
    study draws new points). TPE costs O(trials) per trial (2,000 trials: 130 s on a busy 2-core
    box), NSGA-II about 5 ms, so offline studies default to NSGA-II, online ones to TPE."""
    from common.seeds import derive_seed

    s = derive_seed(seed, "tune", len(study.trials))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=s, multivariate=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s, population_size=50)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=s)
    raise EvolveError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")


def suggest(trial: optuna.Trial, signals: Sequence[str]) -> dict[str, float]:
    """The trial's weights: one in [0, 1] per signal (signs are the combiner's business)."""
    return {s: trial.suggest_float(s, 0.0, 1.0) for s in signals}


def run_offline(study: optuna.Study, replay: Replay, n_trials: int, seed: int,
                tick: Callable[[int], None] | None = None, sampler: str = "nsga2",
                ) -> list[optuna.trial.FrozenTrial]:
    """Optimise in memory (a trial through SQLite costs 60-180 ms on a busy 2-core box, the
    replay about 1 ms), persisting every CHUNK trials with one `add_trials` (about 55 ms each)."""
    mem = optuna.create_study(directions=["maximize"] * len(replay.objectives),
                              sampler=sampler_for(sampler, study, seed))
    mem.add_trials([t for t in study.get_trials(deepcopy=False) if t.state.is_finished()])
    single = len(replay.objectives) == 1

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        values = replay.score(suggest(trial, replay.signals))
        return values[0] if single else tuple(values)

    callbacks = [lambda _s, _t: tick(1)] if tick else []
    new: list[optuna.trial.FrozenTrial] = []
    while len(new) < n_trials:
        start = len(mem.trials)
        mem.optimize(objective, n_trials=min(CHUNK, n_trials - len(new)), callbacks=callbacks)
        chunk = mem.get_trials(deepcopy=False)[start:]
        study.add_trials(chunk)
        new += chunk
    return new


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best trial; with several objectives, the Pareto-front trial with the highest mean."""
    if len(study.directions) == 1:
        return study.best_trial
    return max(study.best_trials, key=lambda t: (float(np.mean(t.values)), -t.number))


def weights_of(trial: optuna.trial.FrozenTrial, signals: Sequence[str]) -> dict[str, float]:
    """The trial's weights scaled to sum 1 (the ranking they give does not depend on the scale)."""
    return _unit({s: float(trial.params.get(s, 0.0)) for s in signals})


def _unit(w: Mapping[str, float]) -> dict[str, float]:
    total = sum(w.values())
    return {s: round(v / total, 6) for s, v in w.items()} if total > 0 else dict(w)


@dataclass
class Best:
    weights: dict[str, float]   # scaled to sum 1
    values: list[float]         # per objective
    trials: list[int]           # the trial(s) they come from


def best_weights(study: optuna.Study, signals: Sequence[str], replay: Replay | None = None,
                 tol: float = 1e-9) -> Best:
    """The weights to write. Offline with one objective, many weightings tie at the best score
    (every weighting that orders the parents the same way): their mean is taken, the middle of
    the optimal region rather than its first-found corner, if the replay scores it as high."""
    best = best_trial(study)
    single = Best(weights_of(best, signals), list(best.values), [best.number])
    if replay is None or len(study.directions) > 1:
        return single
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    tied = [t for t in done if t.values[0] >= best.values[0] - tol and
            all(s in t.params for s in signals)]
    mean = _unit({s: float(np.mean([weights_of(t, signals)[s] for t in tied])) for s in signals})
    values = replay.score(mean)
    if len(tied) < 2 or values[0] < best.values[0] - tol:
        return single
    return Best(mean, values, [t.number for t in tied])


def history(study: optuna.Study, names: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """Objective name -> [(trial number, value)] over the study's completed trials."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return {n: [(t.number, float(t.values[k])) for t in done] for k, n in enumerate(names)}


# --- online: each trial a short evolution --------------------------------------------------------


class _Reporter:
    """A Tracker stand-in for the engine: passes every call through, and after each generation
    is logged reports the trial's objective so far (and raises TrialPruned when told to)."""

    def __init__(self, tracker: Tracker, trial: optuna.Trial, outcomes: Sequence[str],
                 tags: dict[str, str], prune: bool) -> None:
        self._tracker, self._trial, self._outcomes = tracker, trial, list(outcomes)
        self._tags, self._prune = tags, prune
        self.first: list[float] | None = None
        self.values: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)

    def log_generation(self, generation: int, records: list[LearnerRecord],
                       summary: dict[str, float], plots: bool = True) -> None:
        self._tracker.log_generation(generation, records, summary, plots=plots)
        if generation == 0 and self._tracker.run_id:
            self._tracker.set_tags(self._tracker.run_id, self._tags)
            self._trial.set_user_attr("mlflow_run_id", self._tracker.run_id)
        means = [_mean_outcome(records, o) for o in self._outcomes]
        if self.first is None:
            self.first = means
        self.values = [m - f for m, f in zip(means, self.first, strict=True)]
        if self._prune and math.isfinite(self.values[0]):
            self._trial.report(self.values[0], generation)
            if self._trial.should_prune():
                raise optuna.TrialPruned(f"pruned after generation {generation}")


def trial_config(cfg: RunConfig, weights: Mapping[str, float]) -> RunConfig:
    """The evolution config of one online trial: `cfg` with these weights, assessed every
    generation (the objective needs it), in weighted mode."""
    from evolve.config import from_dict

    data = cfg.to_dict()
    data["fitness"].update(weights=dict(weights), weights_file=None, mode="weighted")
    data["assess"]["every"] = 1
    if int(data["assess"]["steps"]) <= 0:
        raise EvolveError("online tuning measures learning speed with the assessment; set "
                          "assess.steps > 0 (--set assess.steps=8)")
    return from_dict(data)


def run_online(study: optuna.Study, cfg: RunConfig, signals: Sequence[str], outcomes: Sequence[str],
               n_trials: int, make_tracker: Callable[[], Tracker],
               tick: Callable[[int], None] | None = None, sampler: str = "tpe") -> list[str]:
    """Each trial one short evolution (local/ray backend per `cfg`); returns their run ids."""
    from evolve.backends import make_backend
    from evolve.engine import evolve

    runs: list[str] = []
    prune = len(outcomes) == 1   # optuna cannot report intermediate values of multi-objective trials
    trial_config(cfg, dict.fromkeys(signals, 1.0))  # bad settings fail before the first trial

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        tcfg = trial_config(cfg, suggest(trial, signals))
        tracker = make_tracker()
        tags = {"evolve.tune_study": study.study_name, "evolve.tune_trial": str(trial.number)}
        reporter = _Reporter(tracker, trial, outcomes, tags, prune)
        backend = make_backend(tcfg.backend)
        try:
            evolve(tcfg, reporter, backend, progress=False)
        except optuna.TrialPruned:
            tracker.finish("KILLED")
            raise
        finally:
            backend.close()
            if tracker.run_id:
                runs.append(tracker.run_id)
        return reporter.values[0] if len(outcomes) == 1 else tuple(reporter.values)

    callbacks = [lambda _s, _t: tick(1)] if tick else []
    study.sampler = sampler_for(sampler, study, cfg.seed)
    study.optimize(objective, n_trials=n_trials, callbacks=callbacks, catch=())
    return runs
