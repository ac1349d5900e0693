# The options both modules share (`programs.airlock.{enable,package,settings}`);
# `settings` is airlock's config.toml as a Nix attribute set (docs/cli.md,
# "Configuration"). Secrets never go there: point `agents.<agent>.secret_file`
# at a sops-nix / agenix path instead.
{ lib, pkgs, self }:

let
  toml = pkgs.formats.toml { };
in
{
  inherit toml;
  options = {
    enable = lib.mkEnableOption "airlock, credentials for AI coding agents in container sandboxes";
    package = lib.mkOption {
      type = lib.types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.airlock;
      defaultText = lib.literalExpression "airlock.packages.\${system}.airlock";
      description = "The airlock package to install.";
    };
    settings = lib.mkOption {
      type = toml.type;
      default = { };
      example = lib.literalExpression ''
        {
          vault.backend = "file";
          agents.claude.secret_file = config.sops.secrets.claude-token.path;
          agents.claude.method = "token";
          sync.rotation = "broker";
        }
      '';
      description = ''
        airlock's configuration (config.toml), written as Nix. Holds paths and
        choices, never a secret: reference secret files (sops-nix, agenix) with
        `agents.<agent>.secret_file`.
      '';
    };
  };
}
