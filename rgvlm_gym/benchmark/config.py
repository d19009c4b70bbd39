"""Benchmark configs: :class:`BenchmarkConfig`, :class:`LabelerSpec`, :class:`RewardSpec`, :func:`load_config`.

A config is a TOML file (YAML too, where PyYAML is installed) with these tables; every key but
``dataset.episodes`` has a default::

    name = "figure4"                 # names the Minari namespace ("bench-figure4") and the report
    description = "..."
    lvlm = "sim"                     # LVLM of the LVLM labelers unless a [labelers.X] table says otherwise

    [dataset]                        # `rgvlm collect` options
    tasks = "procedural"             # or "alfred" with alfred_dir / split
    num_tasks = 600
    subtasks = "1-6"
    episodes = 3000
    policy = "mixed"
    seed = 0

    [labelers.rgvlm_noisy]           # optional: named labeler variants (default: type = the name)
    type = "rgvlm"
    lvlm = "sim:noise=2"
    x = 2.0                          # its position on a curve (the noise curve)
    optional = false                 # true: skipped with a warning when the labeler is not available

    [train]
    algos = ["iql"]
    rewards = ["sparse", "rgvlm", "sparse+rgvlm", "sparse+0.5*rgvlm"]
    seeds = [0, 1, 2]
    steps = 20000                    # omit for `rgvlm train`'s own default (the learning recipe)
    args = []                        # more `rgvlm train` flags

    [evaluate]                       # `rgvlm evaluate` options
    subtasks = "1-6"
    episodes = 20                    # per sub-task count, per evaluation seed and initial-state kind
    seeds = [0]
    randomize_init = true

    [quick]                          # `--quick`: these values replace the ones above (and the
    dataset = { episodes = 200 }     # namespace gets "-quick", so quick and full datasets never mix)
    train = { steps = 300 }

Rewards: ``sparse`` (the environment's), ``NAME`` (labeler ``NAME`` alone), ``sparse+NAME`` (sparse +
1 x NAME) and ``sparse+LAM*NAME`` (e.g. ``sparse+0.5*rgvlm``), where ``NAME`` is a labeler type
(``rgvlm``, ``oracle``, ...) or a ``[labelers.NAME]`` variant.

    >>> cfg = BenchmarkConfig.from_dict({"name": "demo", "dataset": {"episodes": 40},
    ...     "train": {"rewards": ["sparse", "sparse+0.5*rgvlm", "oracle"], "seeds": [0, 1]}})
    >>> [(r.name, r.labeler, r.lam, r.column) for r in cfg.rewards]
    [('sparse', None, None, 'rewards'), ('sparse+0.5*rgvlm', 'rgvlm', 0.5, 'rewards'), ('oracle', 'oracle', 1.0, 'lvlm_rewards')]
    >>> cfg.namespace, cfg.train.seeds
    ('bench-demo', [0, 1])
"""

from __future__ import annotations

import copy
import difflib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "BenchmarkConfig",
    "ConfigError",
    "DatasetSpec",
    "EvaluateSpec",
    "LabelerSpec",
    "RewardSpec",
    "TrainSpec",
    "load_config",
]


class ConfigError(ValueError):
    """A benchmark config that cannot run; the message names the key."""


@dataclass(frozen=True)
class DatasetSpec:
    """The source dataset: ``rgvlm collect`` options."""

    episodes: int
    tasks: str = "procedural"
    num_tasks: int = 600
    subtasks: str | None = "1-6"
    policy: str = "mixed"
    mix: str | None = None
    seed: int = 0
    randomize_init: bool = False
    alfred_dir: str | None = None
    split: str = "valid_seen"
    max_steps: int = 50
    image_size: int = 64
    frame_size: int = 224


@dataclass(frozen=True)
class LabelerSpec:
    """One labeler variant: its registered type, LVLM, embedding model, curve position, optionality."""

    name: str
    type: str
    lvlm: str | None = None
    model: str | None = None
    x: float | None = None
    optional: bool = False
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class RewardSpec:
    """A reward to train on: which dataset (the source, or a relabeled one at ``lam``) and which column."""

    name: str
    labeler: str | None  # None: the sparse reward of the source dataset
    lam: float | None
    column: str


@dataclass(frozen=True)
class TrainSpec:
    """``rgvlm train`` runs: every algorithm x reward x seed."""

    algos: list[str] = field(default_factory=lambda: ["iql"])
    rewards: list[str] = field(default_factory=lambda: ["sparse", "sparse+rgvlm"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int | None = None
    batch_size: int | None = None
    args: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EvaluateSpec:
    """``rgvlm evaluate`` options, the same for every run (so runs face the same tasks)."""

    subtasks: str = "1-6"
    episodes: int = 20
    seeds: list[int] = field(default_factory=lambda: [0])
    randomize_init: bool = True
    suite_seed: int | None = None
    num_tasks: int | None = None
    args: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CurveSpec:
    """A curve over labeler variants (``x`` of each ``[labelers.NAME]``), e.g. completion vs sim noise."""

    x_label: str = "x"
    ks: list[int] | None = None  # sub-task counts averaged on the y axis (None: all)
    init: str = "dataset"


_REWARD_RE = re.compile(r"^(?:(?P<sparse>sparse)\s*\+\s*(?:(?P<lam>[0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*\*\s*)?)?(?P<name>[A-Za-z_][\w-]*)$")


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    names = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"[{where}]: unknown key {unknown[0]!r}; expected one of {names}.{hint}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"[{where}]: {exc}") from None


@dataclass(frozen=True)
class BenchmarkConfig:
    """A parsed benchmark config (module docstring); build it with :func:`load_config` or :meth:`from_dict`."""

    name: str
    dataset: DatasetSpec
    train: TrainSpec
    evaluate: EvaluateSpec
    labelers: dict[str, LabelerSpec]
    rewards: list[RewardSpec]
    lvlm: str = "sim"
    description: str = ""
    namespace: str = ""
    curve: CurveSpec | None = None
    quick: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], quick: bool = False) -> BenchmarkConfig:
        """Parse a config mapping; ``quick`` applies its ``[quick]`` table."""
        data = copy.deepcopy(dict(data))
        quick_table = data.pop("quick", {}) or {}
        if quick and "namespace" not in quick_table:  # quick datasets never collide with the full ones
            quick_table["namespace"] = f"{data.get('namespace') or 'bench-' + str(data.get('name'))}-quick"
        if quick:
            for key, value in quick_table.items():
                if isinstance(value, Mapping) and isinstance(data.get(key), Mapping):
                    data[key] = {**data[key], **value}
                else:
                    data[key] = value
        top = {"name", "description", "lvlm", "namespace", "dataset", "labelers", "train", "evaluate", "curve"}
        unknown = [k for k in data if k not in top]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(top), n=1)
            raise ConfigError(f"unknown top-level key {unknown[0]!r}; expected one of {sorted(top)}."
                              + (f" Did you mean {close[0]!r}?" if close else ""))
        name = str(data.get("name") or "")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ConfigError(f"`name` must be letters, digits, '-' or '_', got {name!r}")
        if "dataset" not in data or "episodes" not in data["dataset"]:
            raise ConfigError("[dataset]: `episodes` is required")
        dataset = _build(DatasetSpec, data["dataset"], "dataset")
        train = _build(TrainSpec, data.get("train", {}), "train")
        evaluate = _build(EvaluateSpec, data.get("evaluate", {}), "evaluate")
        curve = _build(CurveSpec, data["curve"], "curve") if data.get("curve") else None
        lvlm = str(data.get("lvlm", "sim"))
        for what, values in (("train.seeds", train.seeds), ("evaluate.seeds", evaluate.seeds)):
            if not values or not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
                raise ConfigError(f"`{what}` must be a non-empty list of integers, got {values!r}")
        if dataset.episodes < 1 or evaluate.episodes < 1:
            raise ConfigError("`dataset.episodes` and `evaluate.episodes` must be >= 1")
        if train.steps is not None and train.steps < 1:
            raise ConfigError(f"`train.steps` must be >= 1, got {train.steps}")
        if not train.algos or not train.rewards:
            raise ConfigError("`train.algos` and `train.rewards` must not be empty")

        labelers: dict[str, LabelerSpec] = {}
        for lname, table in (data.get("labelers") or {}).items():
            table = dict(table or {})
            table.setdefault("type", lname)
            table["args"] = tuple(table.get("args", ()))
            labelers[lname] = _build(LabelerSpec, {"name": lname, **table}, f"labelers.{lname}")
        rewards: list[RewardSpec] = []
        for text in train.rewards:
            r = parse_reward(str(text))
            if r.labeler is not None and r.labeler not in labelers:
                labelers[r.labeler] = LabelerSpec(name=r.labeler, type=r.labeler)
            rewards.append(r)
        if len({r.name for r in rewards}) != len(rewards):
            raise ConfigError(f"`train.rewards` has duplicates: {train.rewards}")
        labelers = {k: (v if v.lvlm is not None else LabelerSpec(**{**v.__dict__, "lvlm": lvlm})) for k, v in labelers.items()}
        namespace = str(data.get("namespace") or f"bench-{name}")
        return cls(name=name, dataset=dataset, train=train, evaluate=evaluate, labelers=labelers, rewards=rewards,
                   lvlm=lvlm, description=str(data.get("description", "")), namespace=namespace, curve=curve, quick=quick,
                   raw=data)


def parse_reward(text: str) -> RewardSpec:
    """Parse a reward name: ``sparse``, ``NAME``, ``sparse+NAME`` or ``sparse+LAM*NAME``.

    >>> parse_reward("sparse+rgvlm")
    RewardSpec(name='sparse+rgvlm', labeler='rgvlm', lam=1.0, column='rewards')
    >>> parse_reward("sparse + 2*")
    Traceback (most recent call last):
    ...
    rgvlm_gym.benchmark.config.ConfigError: bad reward 'sparse + 2*': expected sparse, NAME, sparse+NAME or sparse+LAM*NAME (e.g. sparse+0.5*rgvlm)
    """
    text = text.strip()
    m = _REWARD_RE.fullmatch(text)
    if not m:
        raise ConfigError(f"bad reward {text!r}: expected sparse, NAME, sparse+NAME or sparse+LAM*NAME (e.g. sparse+0.5*rgvlm)")
    name = m["name"]
    if m["sparse"] is None:
        if name == "sparse":
            return RewardSpec("sparse", None, None, "rewards")
        return RewardSpec(name, name, 1.0, "lvlm_rewards")
    lam = float(m["lam"]) if m["lam"] is not None else 1.0
    if name == "sparse":
        raise ConfigError(f"bad reward {text!r}: 'sparse' cannot be added to itself")
    return RewardSpec(text.replace(" ", ""), name, lam, "rewards")


def load_config(path: str | Path, quick: bool = False) -> BenchmarkConfig:
    """Read a TOML (``.toml``) or YAML (``.yaml`` / ``.yml``, needs PyYAML) benchmark config."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no benchmark config at {p}")
    text = p.read_text(encoding="utf-8")
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{p}: YAML configs need PyYAML (pip install pyyaml), or use TOML") from None
        data = yaml.safe_load(text) or {}
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: expected a table of settings at the top level")
    return BenchmarkConfig.from_dict(data, quick=quick)
