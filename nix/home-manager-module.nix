# home-manager module: installs airlock for the user and writes
# ~/.config/airlock/config.toml from `programs.airlock.settings`.
self:
{ config, lib, pkgs, ... }:

let
  cfg = config.programs.airlock;
  settings = import ./settings.nix { inherit lib pkgs self; };
in
{
  options.programs.airlock = settings.options;

  config = lib.mkIf cfg.enable {
    home.packages = [ cfg.package ];
    xdg.configFile."airlock/config.toml" = lib.mkIf (cfg.settings != { }) {
      source = settings.toml.generate "airlock-config.toml" cfg.settings;
    };
  };
}
