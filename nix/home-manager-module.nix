# home-manager module: installs airlock for the user and writes
# ~/.config/airlock/config.toml from `programs.airlock.settings`.
self:
{ config, lib, pkgs, ... }:

let
  cfg = config.programs.airlock;
  settings = import ./settings.nix { inherit lib pkgs; };
in
{
  options.programs.airlock = {
    enable = lib.mkEnableOption "airlock, credentials for AI coding agents in container sandboxes";
    package = lib.mkOption {
      type = lib.types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.airlock;
      defaultText = lib.literalExpression "airlock.packages.\${system}.airlock";
      description = "The airlock package to install.";
    };
    settings = settings.option;
  };

  config = lib.mkIf cfg.enable {
    home.packages = [ cfg.package ];
    xdg.configFile."airlock/config.toml" = lib.mkIf (cfg.settings != { }) {
      source = settings.toml.generate "airlock-config.toml" cfg.settings;
    };
  };
}
