"""`apitoken-operator export`: ApiToken manifests that adopt the existing tokens of a Dynatrace environment.

- `manifests`: pure: names, checks, the documents and their YAML;
- `reader`: reads the tokens (paginated) and decides which become manifests;
- `command`: the command line, progress and errors on stderr, the output.

See docs/export.md.
"""

from apitoken_operator.export.command import add_arguments, main

__all__ = ["add_arguments", "main"]
