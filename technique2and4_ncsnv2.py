"""NCSNv2 techniques 2 and 4: the number of noise levels and the Langevin step size for a geometric schedule.

    python technique2and4_ncsnv2.py --sigma1 S --sigmaL S (--dim D | --height H --width W [--channels C]) --T T

Technique 2: the ratio gamma with Phi(sqrt(2D)(gamma-1) + 3 gamma) - Phi(sqrt(2D)(gamma-1) - 3 gamma) = 0.5 and
L = ceil(log(sigma1/sigmaL) / log(gamma)) + 1 levels. Technique 4: for T steps per level, the step epsilon that
brings the paper's eq. (6) closest to 1 (it is above 1 for every epsilon; see ncsn/techniques.py). Prints the
values and a YAML snippet to paste into a config (sigma1 from technique1_ncsnv2.py).
"""
from __future__ import annotations

import argparse

from core.errors import UserError, run_main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sigma1", type=float, required=True, help="largest noise level (technique 1)")
    parser.add_argument("--sigmaL", type=float, default=0.01, help="smallest noise level")
    parser.add_argument("--dim", type=int, default=None, metavar="D",
                        help="data dimension D (default: height x width x channels)")
    parser.add_argument("--height", type=int, default=96, help="spectrogram height (used without --dim)")
    parser.add_argument("--width", type=int, default=64, help="spectrogram width (used without --dim)")
    parser.add_argument("--channels", type=int, default=1, help="channels (used without --dim)")
    parser.add_argument("--T", type=int, required=True, help="Langevin steps per noise level (as many as the "
                                                              "sampling budget allows)")
    args = parser.parse_args(argv)
    dim = args.dim if args.dim is not None else args.height * args.width * args.channels
    if dim < 1:
        raise UserError(f"the data dimension must be at least 1, got {dim}")
    if not 0 < args.sigmaL < args.sigma1:
        raise UserError(f"need 0 < --sigmaL < --sigma1, got sigma1={args.sigma1}, sigmaL={args.sigmaL}")
    if args.T < 1:
        raise UserError(f"--T must be at least 1, got {args.T}")

    from ncsn.techniques import schedule_recipe

    try:
        recipe = schedule_recipe(args.sigma1, args.sigmaL, dim, args.T)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"data dimension D = {dim}")
    print(f"technique 2: gamma = {recipe['gamma']:.8f}, L = {recipe['num_classes']} levels "
          f"(actual ratio {recipe['ratio']:.8f})")
    print(f"technique 4: epsilon = {recipe['step_lr']:.6e} for T = {args.T} "
          f"(eq. (6) = {recipe['variance_ratio']:.6f})")
    print("config snippet:")
    print(f"sigma1: {args.sigma1!r}")
    print(f"sigmaL: {args.sigmaL!r}")
    print(f"num_classes: {recipe['num_classes']}")
    print("progression: 'geometric'")
    print(f"T: {args.T}")
    print(f"step_lr: {recipe['step_lr']:.6e}")
    return 0


if __name__ == "__main__":
    run_main(main)
