"""`python -m journey [serve|migrate]`."""

from journey.app import MIGRATIONS, build
from journey.settings import JourneySettings
from mcloud_common.service_main import main

if __name__ == "__main__":
    main(settings_cls=JourneySettings, build=build, migrations=MIGRATIONS)
