#!/usr/bin/env bash
# Installs mmdflow's build and run dependencies from Debian's packages; does nothing when all are present.
set -euo pipefail
pkgs=(cmake g++ make libtorch-dev libopenblas0-pthread libfmt-dev libyaml-cpp-dev libcxxopts-dev
      libgtest-dev libgmock-dev nlohmann-json3-dev libgloo-dev zlib1g-dev python3-matplotlib
      python3-sklearn)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
