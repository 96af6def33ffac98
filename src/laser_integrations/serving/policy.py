"""What a request may ask for: its side, its K and instruction, its dimensions and how many texts it sends.

Sides: ``input_type`` (or TEI's ``prompt_name``), else a ``:query``/``:document`` suffix on the model name,
else :attr:`~laser_integrations.serving.settings.ServeSettings.default_side`. Each check raises
:class:`~laser_integrations.serving.errors.APIError` with the status and ``param`` the client sees.

>>> from laser_integrations.serving.settings import ServeSettings
>>> policy = RequestPolicy(ServeSettings(), served_name="tiny", model_id="org/tiny", dimension=64)
>>> policy.side("tiny:query"), policy.side(None, ("input_type", "query")), policy.side("org/tiny")
('query', 'query', 'document')
>>> policy.side("gpt-4")
Traceback (most recent call last):
...
laser_integrations.serving.errors.APIError: the model 'gpt-4' is not served here; this server serves 'tiny' \
(add ':query' or ':document' to pick a side)
"""

from __future__ import annotations

from laser_integrations.embedder import EncodeOptions
from laser_integrations.serving.errors import APIError
from laser_integrations.serving.schemas import SIDES, Side
from laser_integrations.serving.settings import MAX_ADAPTIVE_WAIT_MS, ServeSettings


class RequestPolicy:
    """The server's rules for one model: which names it answers to and what each request may ask for."""

    def __init__(self, settings: ServeSettings, *, served_name: str, model_id: str, dimension: int) -> None:
        self.settings = settings
        self.served_name = served_name
        self.names = {served_name, model_id}
        self.dimension = dimension

    def listed_names(self) -> list[str]:
        """The served name, and the same with ``:query`` and ``:document`` (for clients that pick from a list)."""
        return [self.served_name] + [f"{self.served_name}:{side}" for side in SIDES]

    def side(self, model: str | None, *explicit: tuple[str, str | None]) -> Side:
        """The side a request asks for: explicit fields, then the model-name suffix, then the default."""
        chosen: dict[str, str] = {}
        if model is not None:
            name, sep, suffix = model.rpartition(":")
            if sep and suffix in SIDES:
                chosen["model"] = suffix
            else:
                name = model
            if name not in self.names:
                raise APIError(
                    404,
                    f"the model {model!r} is not served here; this server serves {self.served_name!r} "
                    f"(add ':query' or ':document' to pick a side)",
                    param="model",
                    code="model_not_found",
                )
        for param, value in explicit:
            if value is None:
                continue
            if value not in SIDES:
                raise APIError(400, f"{param} must be 'query' or 'document', got {value!r}", param=param)
            chosen[param] = value
        if len(set(chosen.values())) > 1:
            described = ", ".join(f"{param} says {value}" for param, value in chosen.items())
            param = next(name for name in chosen if name != "model")  # two or more: one is a field
            raise APIError(400, f"conflicting sides: {described}", param=param)
        return next(iter(chosen.values()), self.settings.default_side)  # type: ignore[return-value]

    def options(self, side: Side, steps: int | None, instruction: str | None, window_ms: float) -> EncodeOptions:
        """The request's encode options; ``window_ms`` is how long its texts may wait for others to join them."""
        limit = self.settings.max_thinking_steps
        if steps is not None and steps > limit:
            raise APIError(
                400, f"num_thinking_steps is {steps}; this server allows at most {limit}", param="num_thinking_steps"
            )
        if instruction is not None and side != "query":
            raise APIError(400, "instruction applies to queries only (input_type 'query')", param="instruction")
        return EncodeOptions(
            num_thinking_steps=steps,
            instruction=instruction,
            batch_size=self.settings.max_batch_size,
            max_wait_ms=window_ms,
        )

    def collection_window_ms(self, embeddings_in_flight: int, last_pass_seconds: float) -> float:
        """``max_wait_ms``, or, with other requests in flight, a fraction of the last pass's time if longer.

        >>> from laser_integrations.serving.settings import ServeSettings
        >>> policy = RequestPolicy(ServeSettings(max_wait_ms=2.0), served_name="m", model_id="m", dimension=8)
        >>> policy.collection_window_ms(3, 1.0), policy.collection_window_ms(1, 1.0)
        (50.0, 2.0)
        """
        settings = self.settings
        if embeddings_in_flight < 2:  # nobody else to wait for
            return settings.max_wait_ms
        adaptive = settings.wait_fraction * last_pass_seconds * 1000
        return max(settings.max_wait_ms, min(adaptive, MAX_ADAPTIVE_WAIT_MS))

    def check_dimensions(self, dimensions: int | None) -> None:
        if dimensions is not None and dimensions != self.dimension:
            raise APIError(
                400,
                f"dimensions={dimensions}, but this model's vectors have {self.dimension} (LaSER vectors cannot be "
                "shortened); omit dimensions or send it equal",
                param="dimensions",
            )

    def check_count(self, count: int, param: str) -> None:
        limit = self.settings.max_inputs
        if count > limit:
            raise APIError(
                413,
                f"{param} has {count} texts; this server takes at most {limit} per request: send them in "
                "smaller requests",
                param=param,
                code="too_many_inputs",
            )
