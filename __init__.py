"""InvokeAI node-pack entry point for installs where this whole repository is the pack.

InvokeAI's Custom Node Manager clones the repository into ``<root>/nodes/<repo
name>/`` and imports this file. It loads the real package, ``remove_background``,
which registers the node. (Installed with install.py instead, the package lives in
InvokeAI's environment and a small pack in ``nodes/remove_background_node/`` loads it:
see .readme/install.md.)
"""

if __package__:  # imported as a package, as InvokeAI's loader does (pytest may import a clone's root file bare)
    from .remove_background import *  # noqa: F401,F403
    from .remove_background import invocation  # noqa: F401  registers the node
