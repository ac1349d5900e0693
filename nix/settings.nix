# The `settings` option both modules share: airlock's config.toml as a Nix
# attribute set (docs/cli.md, "Configuration"). Secrets never go here: point
# `agents.<agent>.secret_file` at a sops-nix / agenix path instead.
{ lib, pkgs }:

let
  toml = pkgs.formats.toml { };
in
{
  inherit toml;
  option = lib.mkOption {
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
}
