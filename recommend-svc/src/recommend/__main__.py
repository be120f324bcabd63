"""`python -m recommend [serve|migrate]`."""

from mcloud_common.service_main import main
from recommend.app import MIGRATIONS, build
from recommend.settings import RecommendSettings

if __name__ == "__main__":
    main(settings_cls=RecommendSettings, build=build, migrations=MIGRATIONS)
