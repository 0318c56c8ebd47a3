"""``GET /plugins``: the loaded plugins, their versions, hooks and job types; the failures."""

from __future__ import annotations

import falcon

from taskframe.core.plugins import PluginSet


class Plugins:
    def __init__(self, plugins: PluginSet) -> None:
        self.plugins = plugins

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.plugins.describe()
