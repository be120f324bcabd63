"""(being built)"""


async def install(runtime, settings, **_kw) -> None:
    return None
