# The airlock package: the binary, its man pages and its shell completions.
{ lib, rustPlatform, installShellFiles }:

rustPlatform.buildRustPackage {
  pname = "airlock";
  version = (lib.importTOML ../Cargo.toml).package.version;
  src = lib.cleanSource ../.;
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ installShellFiles ];

  # The test suite runs against real Docker, Podman and keyrings
  # (scripts/test.sh), which a Nix build sandbox does not have.
  doCheck = false;

  postInstall = ''
    $out/bin/airlock man --dir man
    installManPage man/*.1
    installShellCompletion --cmd airlock \
      --bash <($out/bin/airlock completions bash) \
      --zsh <($out/bin/airlock completions zsh) \
      --fish <($out/bin/airlock completions fish)
  '';

  meta = {
    description = "Get AI coding agents' credentials into container sandboxes, securely";
    license = with lib.licenses; [ mit asl20 ];
    mainProgram = "airlock";
    platforms = lib.platforms.unix;
  };
}
