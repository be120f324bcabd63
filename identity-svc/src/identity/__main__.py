"""`python -m identity [serve|migrate]`."""

from identity.app import MIGRATIONS, build
from identity.settings import IdentitySettings
from mcloud_common.service_main import main

if __name__ == "__main__":
    main(settings_cls=IdentitySettings, build=build, migrations=MIGRATIONS)
