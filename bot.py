"""Start funnelbot: Socket Mode, HTTP, or the local console, by what `.env` holds (SPEC §6).

Same as `funnelbot serve`.
"""

from funnelbot.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["serve"]))
