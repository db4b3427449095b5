"""``python -m training_pipeline.serve [key=value ...]``: the scan service on ``host:port`` (default
127.0.0.1:8000) with conf/serve.yaml and the dotlist overrides (``champion=models:/scathat-pipeline@champion
routing.mode=shadow challenger=models:/scathat-pipeline/4 auth.keys_file=keys.yaml``). A bad config key or
models that do not load is one ``error:`` line and exit status 2."""

from __future__ import annotations

import logging
import sys

from training_pipeline.utils.run import one_line, quiet_known_warnings, user_errors


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__.strip())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_known_warnings()
    try:
        from training_pipeline.serve.app import create_app
        from training_pipeline.serve.config import load_settings

        bad = [a for a in args if "=" not in a]
        if bad:
            raise ValueError(f"{bad[0]}: expected key=value (e.g. port=8080)")
        settings = load_settings(args)
        app = create_app(settings)
    except (*user_errors(), ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 2
    service = app.state.service
    if not service.auth and settings.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger(__name__).warning("auth is off on %s: every caller is admin", settings.host)
    import uvicorn

    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
