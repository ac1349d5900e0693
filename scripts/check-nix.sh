#!/usr/bin/env bash
# check-nix.sh — what can be checked of flake.nix and nix/*.nix without nixpkgs (docs/install.md).
#   scripts/check-nix.sh                        # parse every Nix file (needs nix-instantiate: Debian nix-bin)
#   NIXPKGS_LIB=/path/to/nixpkgs scripts/check-nix.sh
#       also evaluates the NixOS and home-manager modules with nixpkgs' own module system
#       (its lib/ directory is enough), stubbing the host options and the package, and checks the
#       config.toml they generate and the AIRLOCK_CONFIG_DIR the NixOS module sets.
# Not checked here: building the package (needs nixpkgs' rustPlatform and a Nix store).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nix-instantiate >/dev/null 2>&1 || { echo "check-nix.sh: nix-instantiate missing (apt-get install nix-bin)" >&2; exit 1; }
for f in flake.nix nix/*.nix; do
  nix-instantiate --parse "$f" >/dev/null 2>/tmp/check-nix.err || { grep -v nixbld /tmp/check-nix.err >&2; exit 1; }
  echo "parsed: $f"
done
if [ -z "${NIXPKGS_LIB:-}" ]; then
  echo "modules not evaluated: set NIXPKGS_LIB to a nixpkgs checkout (its lib/ is enough)"
  exit 0
fi
out=$(nix-instantiate --eval --strict --json nix/check-modules.nix --arg nixlib "$NIXPKGS_LIB" --arg repo "$PWD" 2>/tmp/check-nix.err) \
  || { grep -v nixbld /tmp/check-nix.err >&2; exit 1; }
want='{"hm_config":"{\"agents\":{\"claude\":{\"secret_file\":\"/run/secrets/claude\"}},\"sync\":{\"rotation\":\"broker\"},\"vault\":{\"backend\":\"file\"}}","hm_packages":["airlock-stub"],"nixos_config":"{\"agents\":{\"claude\":{\"secret_file\":\"/run/secrets/claude\"}},\"sync\":{\"rotation\":\"broker\"},\"vault\":{\"backend\":\"file\"}}","nixos_env":{"AIRLOCK_CONFIG_DIR":"/etc/airlock"},"nixos_packages":["airlock-stub"]}'
if [ "$out" != "$want" ]; then
  echo "check-nix.sh: the modules evaluated to something else:" >&2
  echo "$out" >&2
  exit 1
fi
echo "evaluated: nix/home-manager-module.nix, nix/nixos-module.nix (settings → config.toml, package installed)"
