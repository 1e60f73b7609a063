"""Rewards for OpenRLHF RL: per-sample rewards from verdicts and lengths, in-process or over HTTP.

* `scorer` -- reward modes, their frozen config, the scorer and the process-wide shared scorer;
* `reward_func` -- the file OpenRLHF loads (``--reward.remote_url``; ``reward_func_path()`` finds it);
* `server` -- the HTTP reward server (settings, ``make_app``, ``serve``); ``python -m tops_plugin.server``
  runs it.
"""
