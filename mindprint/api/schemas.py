"""Pydantic schemas at the API boundary (Create / Public families)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, field_validator, model_validator


class NonceRequest(BaseModel):
    address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")


class NonceResponse(BaseModel):
    nonce: str
    message: str


class VerifyRequest(BaseModel):
    message: str = Field(max_length=2000)
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    address: str
    role: str
    expires_in: int


class RoleUpdate(BaseModel):
    role: Literal["contributor", "requester", "operator"]


class LabelSchema(BaseModel):
    kind: Literal["classes", "text", "rating"]
    classes: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=100
    )
    rating_min: int = 1
    rating_max: int = 5

    @model_validator(mode="after")
    def _check(self) -> LabelSchema:
        if self.kind == "classes" and len(set(self.classes)) < 2:
            raise ValueError("a classes schema needs at least two distinct classes")
        if self.kind == "rating" and self.rating_min >= self.rating_max:
            raise ValueError("rating_min must be below rating_max")
        return self


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    label_schema: LabelSchema
    redundancy: int = Field(default=3, ge=1, le=50)
    reward_pool: str = Field(default="0", pattern=r"^[0-9]{1,40}$", description="the requester's budget, wei")
    challenge_cues: int = Field(
        default=0,
        ge=0,
        le=3,
        description="challenge–response liveness: cues the companion flashes per task at platform-chosen "
        "moments (0 = off); samples are scored on the evoked response to them",
    )


class ProjectPublic(BaseModel):
    id: int
    owner: str
    name: str
    description: str
    label_schema: LabelSchema
    redundancy: int
    reward_pool: str = "0"
    challenge_cues: int = 0
    created: AwareDatetime


class TaskContent(BaseModel):
    text: str | None = Field(default=None, max_length=10000)
    image_cid: str | None = Field(default=None, max_length=120)

    @model_validator(mode="after")
    def _one(self) -> TaskContent:
        if (self.text is None) == (self.image_cid is None):
            raise ValueError("give exactly one of text or image_cid")
        return self


class TaskCreate(BaseModel):
    content: TaskContent
    gold: Any | None = None


class TasksCreate(BaseModel):
    items: list[TaskCreate] = Field(min_length=1, max_length=1000)


class Challenge(BaseModel):
    """Flash a cue ``offsets_ms`` after the stimulus; sign ``nonce`` and the cues' device times."""

    nonce: str
    offsets_ms: list[int]


class TaskPublic(BaseModel):
    """What a contributor sees: never the gold answer."""

    id: int
    project_id: int
    content: TaskContent
    label_schema: LabelSchema
    lease_expires: AwareDatetime | None = None
    challenge: Challenge | None = None


class TasksCreated(BaseModel):
    ids: list[int]

    @field_validator("ids")
    @classmethod
    def _non_empty(cls, value: list[int]) -> list[int]:
        return value


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: Any = None
    instance: str | None = None


#: the 4xx answers every route may give, declared in the OpenAPI schema
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text}
    for status, text in {
        400: "malformed request (e.g. JSON nested too deeply)",
        401: "not signed in, or a signature does not verify",
        403: "the account's role does not allow this",
        404: "no such resource visible to the account",
        409: "duplicate, replay or a state that does not allow it",
        413: "payload too large",
        422: "input that is malformed or does not check out",
        429: "over a rate limit (Retry-After says when to try again)",
    }.items()
}
