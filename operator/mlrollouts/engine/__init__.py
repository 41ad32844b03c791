"""Pure decision core: (spec, status, observations, now) -> Decision. No kopf, kubernetes, HTTP or clock."""
