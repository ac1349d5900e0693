{
  description = "airlock: AI coding agents' credentials into container sandboxes, securely";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        airlock = pkgs.callPackage ./nix/package.nix { };
        default = airlock;
      });

      # NixOS: `imports = [ airlock.nixosModules.default ]; programs.airlock.enable = true;`
      nixosModules.default = import ./nix/nixos-module.nix self;
      # home-manager: `imports = [ airlock.homeManagerModules.default ]; programs.airlock = { … };`
      homeManagerModules.default = import ./nix/home-manager-module.nix self;

      checks = forAllSystems (pkgs: { airlock = self.packages.${pkgs.stdenv.hostPlatform.system}.airlock; });
    };
}
