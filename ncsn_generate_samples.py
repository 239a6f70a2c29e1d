"""Draw samples from a trained NCSN prior with annealed Langevin dynamics; save them, draw them, listen to them.

    python ncsn_generate_samples.py RESTORE_PATH [--config FILE] [--n_samples 8] [--seed 0] [--output DIR]

RESTORE_PATH is a train_ncsn.py run folder (its best checkpoint), a checkpoint folder or a checkpoint prefix.
Writes into OUTPUT (default RESTORE_PATH/samples): samples.npy ((n, 96, 64) float32 dB mel spectrograms, or
(n, h, w, c) [0,1] images), samples.png (a grid; spectrograms with a frequency axis in Hz) and, for spectrograms,
sample_<i>.wav (Griffin-Lim inversion, 16 kHz). The run's config keys (T, step_lr, ...) can be overridden by flags.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from core.config import CONFIG_NAME, add_config_arguments, config_overrides, load_config
from core.errors import UserError, run_main
from core.rundir import check_output_dir


def plot_grid(samples, path: Path, params=None) -> None:
    """A grid of samples: dB mel spectrograms (n, n_mels, n_frames) with librosa's specshow, or images."""
    import numpy as np

    from separation.figures import pyplot, specshow_db

    plt = pyplot()
    n = len(samples)
    columns = min(4, n)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False,
                             constrained_layout=True)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for index, (ax, sample) in enumerate(zip(axes.ravel(), samples)):
        if params is not None:
            image = specshow_db(ax, sample, params)
        else:
            ax.imshow(np.squeeze(sample), cmap="gray" if sample.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax.axis("off")
        ax.set_title(f"sample {index}", fontsize=9)
    if params is not None:
        fig.colorbar(image, ax=axes, format="%+.0f dB")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("restore_path", metavar="RESTORE_PATH", help="train_ncsn.py run folder or checkpoint")
    parser.add_argument("--n_samples", type=int, default=8, help="samples to draw")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start and the Langevin noise")
    parser.add_argument("--output", help="output folder (default: RESTORE_PATH/samples)")
    parser.add_argument("--image_shape", type=int, nargs=3, metavar=("H", "W", "C"),
                        help="for networks trained on images: the image shape, e.g. 28 28 1")
    parser.add_argument("--overwrite", action="store_true", help="write over earlier samples in OUTPUT")
    add_config_arguments(parser, config_required=False)
    args = parser.parse_args(argv)
    if args.n_samples < 1:
        raise UserError("--n_samples must be at least 1")

    import numpy as np

    from datasets.preprocessing import from_unit
    from core.training import resolve_checkpoint
    from ncsn.checkpoints import restore_score_network
    from ncsn.sampling import ncsn_sampler
    from ncsn.schedule import sigmas_from_config

    prefix, run = resolve_checkpoint(args.restore_path)
    config_file = args.config or (run / CONFIG_NAME)
    if not Path(config_file).is_file():
        raise UserError(f"no config.yml in {run}; pass --config with the config the network was trained with")
    config = load_config(config_file, config_overrides(args), required=("n_filters",))
    output = check_output_dir(args.output or run / "samples", args.overwrite,
                              result_patterns=("samples.npy", "samples.png", "sample_*.wav"))
    shape = tuple(args.image_shape) if args.image_shape else (config.height, config.width, 1)
    model, config = restore_score_network(prefix, config, shape)
    print(f"restored {prefix}; sampling {args.n_samples} x {shape} with {config.num_classes} levels x T={config.T}")
    sampler = ncsn_sampler(model, sigmas_from_config(config), config.T, config.step_lr, denoise=True)
    unit = np.clip(sampler.sample((args.n_samples, *shape), seed=args.seed).numpy(), 0.0, 1.0)

    if args.image_shape:
        np.save(output / "samples.npy", unit.astype(np.float32))
        plot_grid(unit, output / "samples.png")
    else:
        from core.spectral import mel_to_audio
        from datasets.preprocessing import write_audio

        params = config.spectrogram_params()
        mel = from_unit(unit[..., 0], config.scale, params).astype(np.float32)  # (n, n_mels, n_frames)
        np.save(output / "samples.npy", mel)
        plot_grid(mel if config.scale == "dB" else 10 * np.log10(np.maximum(mel, params.power_min)),
                  output / "samples.png", params)
        audio = mel_to_audio(mel[:, np.newaxis], params, scale=config.scale)
        for index, waveform in enumerate(audio):
            write_audio(output / f"sample_{index}.wav", waveform, params.sample_rate)
    print(f"wrote {args.n_samples} samples to {output}")
    return 0


if __name__ == "__main__":
    run_main(main)
