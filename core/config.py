"""The one config loader of the suite: YAML in, a typed and validated :class:`Config` out, flags on top.

Configs are flat YAML files, as the seed's (``configs/melspec_glow.yml`` ...). Every key is a field of
:class:`Config` with a type, a default (or ``None`` where a script must be told) and a help text. Rules:

* an unknown key, a value of the wrong type, a value outside its choices or a missing required key is a one-line
  :class:`~core.errors.UserError` naming the key and the file (and, for unknown keys, the accepted keys);
* every key is also a command-line flag ``--key value`` (:func:`add_config_arguments`); a flag given on the
  command line overrides the file, a flag not given leaves the file's value;
* the resolved config (file + flags + defaults) is written into each run's output folder (:func:`save_config`).

Example::

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args()
    config = load_config(args.config, overrides=config_overrides(args), required=("n_filters",))
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import yaml

from core.errors import UserError


#: the resolved config of a run, in every run folder and prior folder
CONFIG_NAME = "config.yml"


def _field(default, help: str, choices: tuple | None = None):
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass
class Config:
    """All settings of data, models, training and sampling. Units are given in each help text."""

    # --- data and scaling -------------------------------------------------------------------------------------
    height: int = _field(96, "spectrogram height = mel bands (or image height)")
    width: int = _field(64, "spectrogram width = STFT frames per segment (or image width)")
    scale: str = _field("dB", "amplitude scale of the spectrograms", ("dB", "power"))
    use_logit: bool = _field(False, "pass the [0,1]-scaled data through logit(alpha + (1-2 alpha) x)")
    alpha: Optional[float] = _field(None, "logit margin alpha (only with use_logit; seed files write False)")
    dequantization_noise: float = _field(0.0, "width of uniform noise added to the [0,1]-scaled data (0: none)")
    augment_gain_db: float = _field(0.0, "training only: a random gain drawn per spectrogram in +-this many dB "
                                         "(0: none)")
    augment_tilt_db: float = _field(0.0, "training only: a random smooth curve over the mel bands, at most this "
                                         "many dB, added per spectrogram (0: none)")
    augment_peak_db: float = _field(0.0, "training only: 3 random narrow resonances (peaks or notches, 1-3 mel "
                                         "bands wide) of at most this many dB each, added per spectrogram (0: none)")

    # --- spectrogram parameters (docs/algorithms.md §1) ---------------------------------------------------------------
    sample_rate: int = _field(16000, "audio sample rate, Hz")
    segment_samples: int = _field(32640, "samples per segment (2.04 s at 16 kHz)")
    n_fft: int = _field(2048, "STFT size, samples")
    hop_length: int = _field(512, "STFT hop, samples")
    n_mels: int = _field(96, "mel bands")
    fmin: float = _field(125.0, "lowest mel frequency, Hz")
    fmax: float = _field(7600.0, "highest mel frequency, Hz")
    db_min: float = _field(-100.0, "spectrogram floor, dB")
    db_max: float = _field(20.0, "spectrogram ceiling, dB")

    # --- Glow / RealNVP -----------------------------------------------------------------------------------------
    L: Optional[int] = _field(None, "Glow: number of levels")
    K: Optional[int] = _field(None, "Glow: steps of flow per level")
    learntop: bool = _field(True, "Glow: learn the prior's mean and scale of the top latent")
    coupling_scale: str = _field("sigmoid", "Glow: scale function of the affine coupling", ("sigmoid", "tanh"))
    dequantization: str = _field("uniform", "flows on 8-bit images: uniform noise in each pixel's bin, or Flow++'s "
                                            "'variational' dequantizer q(u|x) trained with the flow on the bound",
                                 ("uniform", "variational"))
    flow: str = _field("glow", "flow family of train_glow.py, train_noisy_glow.py and Glow priors in BASIS: glow, "
                               "realnvp or flowpp (Flow++: logistic-mixture couplings with self-attention)",
                       ("glow", "realnvp", "flowpp"))

    # --- networks (both families) -------------------------------------------------------------------------------
    n_filters: Optional[int] = _field(None, "convolution filters of the network")

    # --- NCSN and noise schedule --------------------------------------------------------------------------------
    version: str = _field("v1", "NCSN version", ("v1", "v2"))
    ema: bool = _field(False, "keep an exponential moving average of the weights (NCSNv2 technique 5)")
    ema_rate: float = _field(0.999, "EMA momentum")
    sigma1: float = _field(1.0, "largest noise level sigma_1 (in [0,1]-scaled units)")
    sigmaL: float = _field(0.01, "smallest noise level sigma_L")
    num_classes: int = _field(10, "number of noise levels L of the schedule")
    progression: str = _field("geometric", "noise schedule between sigma1 and sigmaL ('logarithmic' = geometric)",
                              ("geometric", "logarithmic", "linear"))
    T: int = _field(100, "Langevin steps per noise level")
    step_lr: float = _field(2e-5, "Langevin step size delta: eta_i = delta (sigma_i / sigma_L)^2")

    # --- BASIS sampler (separation/basis.py; the defaults are the original algorithm) ----------------------------
    start_level: int = _field(0, "BASIS: the first noise level visited (0 = sigma_1); with init: mixture, a start "
                                 "at a lower sigma")
    basis_levels: Optional[int] = _field(None, "BASIS: how many noise levels to visit, spread evenly from "
                                               "start_level to sigma_L (None: all of them)")
    init: str = _field("uniform", "BASIS: starting estimates: uniform over the data range, N(0, 1), or the "
                                  "mixture's equal share plus noise of the first visited level",
                       ("uniform", "normal", "mixture"))
    n_chains: int = _field(1, "BASIS: independent Langevin chains per segment, averaged (the posterior mean)")
    denoise: bool = _field(False, "BASIS: finish with one denoising step of every prior at the last level "
                                  "(Tweedie's estimate, as NCSN sampling does)")
    temperature: float = _field(1.0, "BASIS: the Langevin noise is sqrt(2 eta temperature): 1 samples the "
                                     "posterior, below 1 a sharpened one (0: no noise, towards its mode)")
    consistency: str = _field("none", "BASIS: rescale the sources' mel power so that their sum is the mixture's: "
                                      "never, once at the end, or after every Langevin step",
                              ("none", "final", "step"))

    # --- training -----------------------------------------------------------------------------------------------
    n_epochs: int = _field(100, "training epochs")
    optimizer: str = _field("adam", "optimizer", ("adam", "adamax"))
    batch_size: int = _field(32, "global batch size (split over replicas)")
    learning_rate: float = _field(1e-3, "learning rate")
    warmup_steps: int = _field(0, "steps of linear learning-rate warm-up from 0 (0: none)")
    clipnorm: Optional[float] = _field(None, "clip each gradient to this L2 norm (None: no clipping)")
    clipvalue: Optional[float] = _field(None, "clip each gradient element to [-v, v] (None: no clipping)")
    l2_reg: float = _field(0.0, "L2 weight penalty: adds l2_reg * sum of squared weights to the loss (0: none)")
    spike_factor: float = _field(10.0, "stop when a step's loss exceeds the last epoch's mean by this factor "
                                       "(loss spike); 0 disables the check")
    sample_every: int = _field(10, "epochs between sample grids written to TensorBoard (0: never)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def spectrogram_params(self):
        """The :class:`core.spectral.SpectrogramParams` these settings describe."""
        from core.spectral import SpectrogramParams

        return SpectrogramParams(sample_rate=self.sample_rate, segment_samples=self.segment_samples,
                                 n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels,
                                 fmin=self.fmin, fmax=self.fmax, db_min=self.db_min, db_max=self.db_max)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)


def _base_type(name: str) -> type:
    """int, float, bool or str for a field (Optional[...] unwrapped)."""
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _is_optional(name: str) -> bool:
    return type(None) in typing.get_args(_HINTS[name])


def _convert(name: str, value: Any, where: str) -> Any:
    """Check (and where lossless, convert) one value for field ``name``; raise UserError on a wrong type."""
    kind = _base_type(name)
    choices = FIELDS[name].metadata["choices"]
    if value is None or (value is False and _is_optional(name) and kind is not bool):
        # the seed writes `alpha: False` for "not set"
        return None
    ok = True
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string: accept it as the number it is
            try:
                value = float(value)
            except ValueError:
                ok = False
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        else:
            ok = False
    elif kind is str:
        ok = isinstance(value, str)
    if not ok:
        raise UserError(f"{where}: key '{name}' must be {kind.__name__}, got {value!r} ({type(value).__name__})")
    if choices and value not in choices:
        raise UserError(f"{where}: key '{name}' must be one of {', '.join(choices)}, got {value!r}")
    return value


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"config file {path} does not exist (the seed's configs are in configs/)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{at} ({getattr(err, 'problem', err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a mapping of 'key: value' lines, got {type(data).__name__}")
    return data


def load_config(path: str | os.PathLike | None, overrides: Mapping[str, Any] | None = None,
                required: Iterable[str] = ()) -> Config:
    """Read a YAML config, apply command-line overrides, validate, and return a :class:`Config`.

    Args:
        path: YAML file, or None for defaults only.
        overrides: values given on the command line (already typed or as strings); they win over the file.
        required: keys that must have a value (from the file, a flag or a default) for the calling script.
    Raises:
        UserError: unknown key, wrong type, value outside its choices, missing required key, unreadable file.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        where = str(path)
        for key, value in _read_yaml(path).items():
            if key not in FIELDS:
                raise UserError(f"{where}: unknown key '{key}'; accepted keys: {', '.join(FIELDS)}")
            values[key] = _convert(key, value, where)
    for key, value in (overrides or {}).items():
        if key not in FIELDS:
            raise UserError(f"unknown config flag --{key}; accepted: {', '.join('--' + k for k in FIELDS)}")
        values[key] = _convert(key, value, f"flag --{key}")
    config = Config(**values)
    source = str(path) if path is not None else "the defaults"
    for key in required:
        if getattr(config, key) is None:
            raise UserError(f"{source}: missing required key '{key}' ({FIELDS[key].metadata['help']}); "
                            f"add it to the config or pass --{key}")
    if config.use_logit and config.alpha is None:
        raise UserError(f"{source}: use_logit is true but alpha is not set; add e.g. 'alpha: 0.05'")
    if config.sigmaL <= 0 or config.sigma1 <= config.sigmaL:
        raise UserError(f"{source}: need 0 < sigmaL < sigma1, got sigma1={config.sigma1}, sigmaL={config.sigmaL}")
    for key in ("num_classes", "T", "n_epochs", "batch_size", "height", "width", "n_chains"):
        if getattr(config, key) < 1:
            raise UserError(f"{source}: key '{key}' must be at least 1, got {getattr(config, key)}")
    if config.temperature < 0:
        raise UserError(f"{source}: key 'temperature' must be at least 0, got {config.temperature}")
    if not 0 <= config.start_level < config.num_classes:
        raise UserError(f"{source}: key 'start_level' must be in 0..{config.num_classes - 1} (num_classes "
                        f"{config.num_classes}), got {config.start_level}")
    if config.start_level > 0 and config.init != "mixture":
        raise UserError(f"{source}: start_level {config.start_level} starts below sigma_1 from {config.init} noise, "
                        "which the lower noise levels cannot undo; use init: mixture (or start_level: 0)")
    if config.basis_levels is not None and not 1 <= config.basis_levels <= config.num_classes - config.start_level:
        raise UserError(f"{source}: key 'basis_levels' must be in 1..{config.num_classes - config.start_level} (the "
                        f"levels from start_level {config.start_level} to the last), got {config.basis_levels}")
    return config


def save_config(config: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (the run's record of what it used)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


# ----------------------------------------------------------------------------------------------- command line

def _parse_flag(name: str):
    kind = _base_type(name)

    def parse(text: str):
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        if _is_optional(name) and text.strip().lower() in ("none", "null", "false"):
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


#: the keys of the BASIS sampler: the schedule it follows and the options around it
SAMPLER_KEYS = ("T", "step_lr", "start_level", "basis_levels", "init", "n_chains", "temperature", "denoise",
                "consistency")


def sampler_settings(config: "Config") -> dict:
    """{key: value} of the config's sampler keys (:data:`SAMPLER_KEYS`): what a separation's schedule depends on."""
    return {key: getattr(config, key) for key in SAMPLER_KEYS}


def add_config_arguments(parser: argparse.ArgumentParser, config_required: bool = True,
                         skip: Iterable[str] = ()) -> None:
    """Add ``--config FILE`` and one ``--key value`` flag per config key (default: not given)."""
    parser.add_argument("--config", required=config_required, metavar="FILE",
                        help="YAML config (e.g. configs/melspec_ncsnv1.yml); flags below override its keys")
    skip = set(skip)
    add_key_arguments(parser.add_argument_group("config keys (override the --config file)"),
                      [name for name in FIELDS if name not in skip])


def add_key_arguments(parser, names: Iterable[str]) -> None:
    """One ``--key value`` flag for each config key in ``names`` (default: not given; :func:`config_overrides`)."""
    for name in names:
        field = FIELDS[name]
        choices = field.metadata["choices"]
        help_text = field.metadata["help"] + (f" (default {field.default})" if field.default is not None else "")
        parser.add_argument(f"--{name}", type=_parse_flag(name), default=argparse.SUPPRESS, choices=choices,
                            metavar=_base_type(name).__name__.upper() if not choices else None, help=help_text)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the user gave on the command line (flags not given are absent)."""
    return {name: getattr(args, name) for name in FIELDS if hasattr(args, name)}
