"""Sign-in links: good once, for their audience only, for 15 minutes (gateway/signin.py), against the
real database."""
from datetime import timedelta

from backbone.clock import utcnow
from gateway import signin


def test_a_link_opens_once_for_its_audience_and_not_after_fifteen_minutes(db):
    db = db("gateway")
    for name, indexes in signin.INDEXES.items():
        db[name].create_indexes(indexes)
    token = signin.issue(db, "official", "off-1")
    assert db.sign_in_links.count_documents({"_id": token}) == 0  # only its digest is kept
    assert signin.redeem(db, "operator", token) is None
    assert signin.redeem(db, "official", token) == "off-1"
    assert signin.redeem(db, "official", token) is None

    stale = signin.issue(db, "official", "off-2", now=utcnow() - timedelta(minutes=16))
    assert signin.redeem(db, "official", stale) is None
    fresh = signin.issue(db, "official", "off-3", now=utcnow() - timedelta(minutes=14))
    assert signin.redeem(db, "official", fresh) == "off-3"
    assert signin.redeem(db, "official", "") is None
    assert signin.redeem(db, "official", "x" * 500) is None
