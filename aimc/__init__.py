"""The `aimc` command: one installed front door over the generator, simulation, synthesis and
reports (see docs/cli.md). `aimc.cli.main` is the console script; `aimc.schema` holds the JSON
Schema of each unit's config and the config-file loader."""
