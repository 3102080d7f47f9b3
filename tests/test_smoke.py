from conftest import add_user


def test_init_add_lookup(store):
    add_user(store, "anna", "--email", "Anna@Example.com", "--phone", "8 (912) 345-67-89", "--name", "Anna")
    r = store("lookup", "+7 912 345 67 89", "--json")
    assert r.exit_code == 0
    assert [m["login"] for m in r.json["matches"]] == ["anna"]


def test_proc_lookup_not_found(proc):
    assert proc("init").exit_code == 0
    r = proc("lookup", "nobody", "--json")
    assert r.exit_code == 3
    assert r.error["code"] == "not_found"
