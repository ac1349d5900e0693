# Evaluates airlock's home-manager and NixOS modules with nixpkgs' own module
# system (the lib/ of a nixpkgs checkout, passed as `nixlib`), stubbing the
# options the host module set declares and the package, and returns what they
# configure. Run by scripts/check-nix.sh (NIXPKGS_LIB=…).
{ nixlib, repo }:
let
  lib = import (nixlib + "/lib");
  toml = {
    type = lib.types.attrsOf lib.types.anything;
    generate = name: value: { __toString = _: "/stub/${name}"; json = builtins.toJSON value; };
  };
  pkgs = { formats.toml = _: toml; stdenv.hostPlatform.system = "x86_64-linux"; };
  self = { packages.x86_64-linux.airlock = { type = "derivation"; name = "airlock-stub"; outPath = "/nix/store/stub-airlock"; }; };
  hostOptions = { lib, ... }: {
    options.home.packages = lib.mkOption { type = lib.types.listOf lib.types.package; default = [ ]; };
    options.xdg.configFile = lib.mkOption { type = lib.types.attrsOf (lib.types.submodule { options.source = lib.mkOption { type = lib.types.path; }; }); default = { }; };
    options.environment.systemPackages = lib.mkOption { type = lib.types.listOf lib.types.package; default = [ ]; };
    options.environment.etc = lib.mkOption { type = lib.types.attrsOf (lib.types.submodule { options.source = lib.mkOption { type = lib.types.path; }; options.mode = lib.mkOption { type = lib.types.str; default = "symlink"; }; }); default = { }; };
    options.environment.variables = lib.mkOption { type = lib.types.attrsOf lib.types.str; default = { }; };
  };
  user = {
    programs.airlock.enable = true;
    programs.airlock.settings = { vault.backend = "file"; agents.claude.secret_file = "/run/secrets/claude"; sync.rotation = "broker"; };
  };
  eval = module: (lib.evalModules { modules = [ hostOptions module user { _module.args.pkgs = pkgs; } ]; }).config;
  hm = eval (import (repo + "/nix/home-manager-module.nix") self);
  nixos = eval (import (repo + "/nix/nixos-module.nix") self);
in {
  hm_packages = map (p: p.name) hm.home.packages;
  hm_config = hm.xdg.configFile."airlock/config.toml".source.json;
  nixos_packages = map (p: p.name) nixos.environment.systemPackages;
  nixos_config = nixos.environment.etc."airlock/config.toml".source.json;
  nixos_env = nixos.environment.variables;
}
