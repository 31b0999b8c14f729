"""nbval settings for the golden runs: skip plotly JSON and stderr streams when comparing.

Loaded with ``-p nbval_plugin`` by tests/test_nbval_goldens.py. Plotly's JSON
output is compared through its sanitised HTML twin instead; stderr carries
library chatter (warnings, progress) that is not part of a finding.
"""

from __future__ import annotations

from nbval import plugin

_init = plugin.IPyNbFile.__init__


def _init_with_skips(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.skip_compare = tuple(self.skip_compare) + ("application/vnd.plotly.v1+json", "stderr")


plugin.IPyNbFile.__init__ = _init_with_skips

_transform = plugin.transform_streams_for_comparison


def _drop_stderr(outputs):
    return [o for o in _transform(outputs) if "stderr" not in o]


plugin.transform_streams_for_comparison = _drop_stderr
