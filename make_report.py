"""Write the HTML listening pages of separations already on disk (nothing else is touched: no audio, no scores).

    python make_report.py FOLDER [FOLDER ...] [--sources NAME ...]

A FOLDER that holds a separation (wavs, ``metrics.json``, ``run.json``: what ``run_basis_sep.py``,
``separate_songs.py`` per song, ``oracle_systems.py`` or ``melspec_inversion_basis.py`` write) gets ``report.html``;
a FOLDER of such song folders (the output of ``separate_songs.py`` or the example) gets one per song and
``index.html`` linking them. What is missing or unreadable is said on the page.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import UserError, run_main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", metavar="FOLDER", help="separation folders, or folders of them")
    parser.add_argument("--sources", nargs="+", metavar="NAME",
                        help="source names (default: those of run.json, the scores or the wavs)")
    args = parser.parse_args(argv)
    from separation import report

    for folder in map(Path, args.folders):
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder")
        songs = sorted(p.parent for p in folder.glob(f"*/{report.RUN_NAME}"))
        if songs and not (folder / report.RUN_NAME).is_file():
            for song in songs:
                print(report.write_report(song, args.sources))
            print(report.write_index(folder, songs))
        else:
            print(report.write_report(folder, args.sources))
    return 0


if __name__ == "__main__":
    run_main(main)
