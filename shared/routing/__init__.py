"""Where a reply goes: fallback chains, deployment pools, cost routing, the response cache and
A/B experiments (docs/providers/routing.md).

The API plans a reply's route at submit (`plan.plan_route`); the worker walks it, moving to
the next target when one fails (workers/fallback.py). Shared state that every process must
agree on (cooldowns, rate-limit hints, cached replies) lives in Redis.
"""
