"""The site fixtures hold what the scope tests under tests/sites/ rely on."""

from __future__ import annotations

from bms.sites import scope


def test_north_users_see_only_north_points_and_everywhere_sees_both(sites, north_users, everywhere):
    for user in north_users.values():
        assert scope.visible_point_names(scope.site_ids(user)) == {"north_temp", "north_setpoint"}
    assert scope.site_ids(everywhere) is scope.ALL
    assert user.has_perm("points.write_point") and not north_users["viewer"].has_perm("points.write_point")
