# NixOS module: installs airlock system-wide; with `settings`, writes
# /etc/airlock/config.toml and points AIRLOCK_CONFIG_DIR at it for every
# user (a user's own ~/.config/airlock is then not read: use the
# home-manager module for per-user settings).
self:
{ config, lib, pkgs, ... }:

let
  cfg = config.programs.airlock;
  settings = import ./settings.nix { inherit lib pkgs self; };
in
{
  options.programs.airlock = settings.options;

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    environment.etc."airlock/config.toml" = lib.mkIf (cfg.settings != { }) {
      source = settings.toml.generate "airlock-config.toml" cfg.settings;
      mode = "0644";
    };
    environment.variables = lib.mkIf (cfg.settings != { }) {
      AIRLOCK_CONFIG_DIR = "/etc/airlock";
    };
  };
}
