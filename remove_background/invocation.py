"""The InvokeAI node, under the module name that node-pack folders written by earlier install.py runs import.

The node itself lives in ``invokeai_adapter.node``; importing this module registers it.
"""

from .invokeai_adapter.node import *  # noqa: F401,F403
from .invokeai_adapter.node import NODE_ID, RemoveBackgroundInvocation, RemoveBackgroundOutput  # noqa: F401
