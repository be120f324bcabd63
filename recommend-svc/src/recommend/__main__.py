"""`python -m recommend [serve|migrate]`."""

from recommend.app import MIGRATIONS, build
from recommend.settings import RecommendSettings
from mcloud_common.service_main import main

if __name__ == "__main__":
    main(settings_cls=RecommendSettings, build=build, migrations=MIGRATIONS)
