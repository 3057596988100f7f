"""drdeck.toml: where it is found, what it may say, and how one value in it is changed.

Read with tomllib, checked with every problem placed at its line and column, written
with tomlkit so the operator's comments survive. Importing this package is cheap:
tomllib, tomlkit and platformdirs are imported only when a file is found, read or written.
"""

from tui.config.load import (
    CONFIG_ENV,
    CONFIG_NAME,
    ConfigInvalid,
    find_config,
    load_config,
    load_config_file,
    load_config_text,
    search_paths,
    user_config_path,
)
from tui.config.model import (
    REPOSITORY_TYPES,
    ClusterConfig,
    Config,
    Notify,
    Repository,
    Retention,
    Webhook,
)
from tui.config.write import set_value

__all__ = [
    "CONFIG_ENV",
    "CONFIG_NAME",
    "REPOSITORY_TYPES",
    "ClusterConfig",
    "Config",
    "ConfigInvalid",
    "Notify",
    "Repository",
    "Retention",
    "Webhook",
    "find_config",
    "load_config",
    "load_config_file",
    "load_config_text",
    "search_paths",
    "set_value",
    "user_config_path",
]
