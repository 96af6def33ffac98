"""``laser serve``: one LaSER model behind the OpenAI and TEI embedding APIs (uvicorn, or Ray Serve replicas).

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="laser")
>>> register(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["serve", "smollm2", "--port", "9000", "--max-batch-size", "16"])
>>> model_spec(args), args.port, args.max_batch_size
('smollm2', 9000, 16)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from typing import Any

from laser_integrations.cli.options import UserError, add_model_options, load_model_from_args, load_options_from_args

DESCRIPTION = (
    "Serve one LaSER model over HTTP: OpenAI's POST /v1/embeddings (and GET /v1/models), TEI's POST /embed "
    "(and GET /info), GET /health and Prometheus GET /metrics. Concurrent requests share forward passes "
    "(micro-batching, never across sides or K). Pick the side per request with input_type (or TEI's prompt_name) "
    "or a model name suffix (MODEL:query, MODEL:document); requests that say neither get --default-side. "
    "SIGTERM finishes the requests in flight, then exits 0."
)
EPILOG = """examples:
  laser serve laser-qwen3 --port 8080                  # 127.0.0.1 only; --host 0.0.0.0 to expose
  LASER_API_KEY=... laser serve --model smollm2 --port 8080 --max-batch-size 32 --max-wait-ms 2
  laser serve --model laser-qwen3 --ray --replicas 2   # Ray Serve replicas of the same app

clients:
  OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=KEY).embeddings.create(model="laser-qwen3:query", input=[...])
  InferenceClient("http://127.0.0.1:8080").feature_extraction([...], prompt_name="query")
  LaSEREmbeddings(endpoint="http://127.0.0.1:8080")    # LangChain / LlamaIndex adapters: both sides right
"""
API_KEY_ENV = "LASER_API_KEY"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over OpenAI- and TEI-compatible HTTP APIs",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model_positional", nargs="?", metavar="MODEL", help="the model (the same as --model)")
    add_model_options(parser, required=False)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1; 0.0.0.0 exposes it)")
    server.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one and prints it)")
    server.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' on every route but /health; prefer setting ${API_KEY_ENV}, since "
        "a flag shows in ps (default: $" + API_KEY_ENV + ", else open; an empty key is refused)",
    )
    server.add_argument("--served-model-name", default=None, help="the name clients send as model (default: MODEL)")
    server.add_argument("--max-batch-size", type=int, default=32, help="texts per forward pass (32; 1: no coalescing)")
    server.add_argument("--max-wait-ms", type=float, default=2.0, help="how long requests are collected (2 ms)")
    server.add_argument(
        "--wait-fraction",
        type=float,
        default=0.05,
        help="with other requests in flight, collect for up to this fraction of the last forward pass if that is "
        "longer (0.05, at most 500 ms; 0: off)",
    )
    server.add_argument("--max-inputs", type=int, default=2048, help="most texts per request (2048, as OpenAI)")
    server.add_argument("--max-thinking-steps", type=int, default=32, help="largest K a request may ask for (32)")
    server.add_argument(
        "--default-side",
        choices=["query", "document"],
        default="document",
        help="side of a request that names none (document: the text as given, no instruction)",
    )
    server.add_argument(
        "--auto-truncate",
        action="store_true",
        help="cut inputs over --max-seq-length tokens instead of answering 413 (a request's truncate overrides)",
    )
    server.add_argument("--max-request-mb", type=float, default=16.0, help="largest request body in MiB (16)")
    limits = parser.add_argument_group(
        "timeouts and connections", "with --ray, only --body-timeout applies (Ray Serve's proxy owns the connections)"
    )
    limits.add_argument(
        "--header-timeout", type=float, default=10.0, help="seconds a request's line and headers may take (10)"
    )
    limits.add_argument(
        "--body-timeout", type=float, default=30.0, help="seconds a request's body may take after its headers (30)"
    )
    limits.add_argument(
        "--keep-alive-timeout", type=float, default=5.0, help="seconds an idle keep-alive connection stays open (5)"
    )
    limits.add_argument(
        "--max-connections", type=int, default=1024, help="open connections served at once; more get 503 (1024)"
    )
    server.add_argument(
        "--graceful-timeout", type=float, default=30.0, help="seconds SIGTERM waits for requests in flight (30)"
    )
    server.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    server.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    ray = parser.add_argument_group("Ray Serve (pip install 'laser-integrations[ray,serve]')")
    ray.add_argument("--ray", action="store_true", help="run the app as a Ray Serve deployment")
    ray.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas, each with its own model (1)")
    ray.add_argument("--ray-address", default=None, help="a running Ray cluster (default: $RAY_ADDRESS, else local)")
    ray.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs Ray reserves per replica (1)")
    ray.add_argument("--replica-gpus", type=float, default=0.0, help="GPUs Ray reserves per replica (0)")
    parser.set_defaults(run=run_serve)


def model_spec(args: argparse.Namespace) -> str:
    """The model, from ``--model`` or the one positional argument (both may be given only if they agree)."""
    positional, option = args.model_positional, args.model
    if positional is not None and option is not None and positional != option:
        raise UserError(f"two models given: {positional!r} and --model {option!r}; pass one")
    spec = option or positional
    if not spec:
        raise UserError("the model is missing: laser serve MODEL, or laser serve --model MODEL (e.g. smollm2)")
    args.model = spec
    return spec


def settings_from_args(args: argparse.Namespace, spec: str) -> Any:
    from laser_integrations.serving.app import ServeSettings, default_served_name

    if args.max_request_mb <= 0:
        raise UserError(f"--max-request-mb must be > 0, got {args.max_request_mb}")
    return ServeSettings(
        served_model_name=args.served_model_name or default_served_name(spec),
        api_key=api_key(args),
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        wait_fraction=args.wait_fraction,
        max_inputs=args.max_inputs,
        max_thinking_steps=args.max_thinking_steps,
        default_side=args.default_side,
        auto_truncate=args.auto_truncate,
        max_request_bytes=int(args.max_request_mb * 2**20),
        body_timeout=args.body_timeout,
    )


def api_key(args: argparse.Namespace) -> str | None:
    """``--api-key``, else ``$LASER_API_KEY``, else ``None`` (open); an empty one is a user error, since it is
    almost always an unset variable (``--api-key "$KEY"``) that would silently start an open server."""
    if args.api_key is not None:
        source, key = "--api-key", args.api_key
    else:
        source, key = f"${API_KEY_ENV}", os.environ.get(API_KEY_ENV)
    if key is not None and not key.strip():
        raise UserError(
            f"{source} is empty (an unset variable?): give a key, or leave out both --api-key and "
            f"${API_KEY_ENV} for an open server"
        )
    return key


def connection_limits(args: argparse.Namespace) -> Any:
    from laser_integrations.serving.connections import ConnectionLimits

    return ConnectionLimits(
        header_timeout=args.header_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        max_connections=args.max_connections,
    )


def run_serve(args: argparse.Namespace) -> int:
    spec = model_spec(args)
    settings = settings_from_args(args, spec)
    if args.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        print(f"laser serve: warning: listening on {args.host} without --api-key: anyone who reaches it can use it",
              file=sys.stderr)  # fmt: skip
    if args.ray:
        return run_ray(args, spec, settings)
    return run_uvicorn(args, settings)


def run_uvicorn(args: argparse.Namespace, settings: Any) -> int:
    import uvicorn

    from laser_integrations.serving.app import create_app
    from laser_integrations.serving.connections import uvicorn_config

    limits = connection_limits(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    sock = listening_socket(args.host, args.port)
    try:
        app = create_app(load_model_from_args(args), settings)
        config = uvicorn_config(
            app,
            limits,
            host=args.host,
            port=sock.getsockname()[1],
            log_level=args.log_level,
            timeout_graceful_shutdown=args.graceful_timeout,
            lifespan="on",
        )
        _announce(app.state.laser, args.host, sock.getsockname()[1], settings)
        with sigterm_ends_normally():
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (bind errors become one clear line; port 0 picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # connections made while the app starts wait in the backlog
    except OSError as error:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


class sigterm_ends_normally:
    """While inside, SIGTERM is a normal end: uvicorn drains and stops, then re-raises the signal it caught,
    which lands on this no-op handler instead of killing the process with status 143."""

    def __enter__(self) -> sigterm_ends_normally:
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def run_ray(args: argparse.Namespace, spec: str, settings: Any) -> int:
    try:
        import ray
        from ray import serve

        from laser_integrations.serving.ray_serve import deployment
    except ImportError as error:
        raise ImportError(
            f"laser serve --ray needs Ray Serve: pip install 'laser-integrations[ray,serve]' ({error})"
        ) from error
    if args.port == 0:
        raise UserError("--ray needs an explicit --port (Ray Serve's proxy cannot pick one)")
    load_options = load_options_from_args(args)
    load_options["local_files_only"] = args.local_files_only or None
    ray.init(address=args.ray_address, include_dashboard=False)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        application = deployment(
            spec,
            replicas=args.replicas,
            settings=settings,
            num_cpus=args.replica_cpus,
            num_gpus=args.replica_gpus,
            torch_threads=args.threads,
            **load_options,
        )
        serve.run(application, name="laser", route_prefix="/")
        print(
            f"laser serve: {settings.served_model_name} on http://{args.host}:{args.port} in {args.replicas} "
            "Ray Serve replica(s); SIGTERM or Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        serve.shutdown()
        ray.shutdown()
    return 0


def _announce(state: Any, host: str, port: int, settings: Any) -> None:
    metadata = state.metadata()
    shown = f"[{host}]" if ":" in host else host
    print(
        f"laser serve: {metadata.served_model_name} (K={metadata.num_thinking_steps}, dim {metadata.dimension}, "
        f"default side {settings.default_side}, max batch {settings.max_batch_size}) on http://{shown}:{port} "
        f"- OpenAI: http://{shown}:{port}/v1  TEI: http://{shown}:{port}"
        + ("  (API key required)" if settings.api_key else ""),
        file=sys.stderr,
        flush=True,
    )
