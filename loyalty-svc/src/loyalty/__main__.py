"""`python -m loyalty [serve|migrate]`."""

from loyalty.app import MIGRATIONS, build
from loyalty.settings import LoyaltySettings
from mcloud_common.service_main import main

if __name__ == "__main__":
    main(settings_cls=LoyaltySettings, build=build, migrations=MIGRATIONS)
