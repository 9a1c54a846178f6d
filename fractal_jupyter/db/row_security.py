"""Row-level security on a shared PostgreSQL: the database decides which rows a user may see
and change, whatever that user does with their own server or with a direct connection.

The deployment (docs/deploy-jupyterhub.md, section 2c): every hub user has a login role of
their own name, a member of `fractal_user`; administrators are the roles an administrator of
the database made members of `fractal_admin`; the role that runs `jupyter fractal db upgrade
--row-security` owns the tables and is nobody else's. `install` (run by that upgrade, and again
by every later upgrade that migrates) writes the functions, grants and policies below in one
transaction. Each table's policies mirror `services/access.py`: a project and everything
under it belong to the project's members; tasks, task groups, groups and user names are
readable by everyone and written by their owners; an administrator may do anything.

Policies compare table rows with `session_user`, the role that logged in (a `SET ROLE` does
not change it). The functions run as the tables' owner (SECURITY DEFINER), which bypasses the
policies, so that a policy that asks about other tables does not recurse into theirs. They
are PL/pgSQL, whose plans a session keeps (a SECURITY DEFINER SQL function is planned again in
every statement that calls it), and a policy calls the scalar ones as sub-selects, evaluated
once per statement instead of once per row (bench/row_security.py, docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

USER_ROLE = "fractal_user"
ADMIN_ROLE = "fractal_admin"
# The function whose presence says that row security is installed (`is_installed`).
MARKER_FUNCTION = "fractal_admins()"

_MEMBER_PROJECT = "project_id IN (SELECT fractal_member_projects())"
_MEMBER_DATASET = "dataset_id IN (SELECT fractal_member_datasets())"
_OWN = "user_id = (SELECT fractal_user_id())"
_OWN_TASK = (
    "taskgroupv2_id IN (SELECT id FROM task_group WHERE user_id = (SELECT fractal_user_id())) "
    "OR (taskgroupv2_id IS NULL AND owner = session_user)"
)


@dataclass(frozen=True)
class TablePolicies:
    """Which rows of a table a user's role may read, insert, update and delete (SQL
    predicates; administrators may always). `update_check` is what an updated row must be."""

    select: str
    insert: str
    update: str
    update_check: str
    delete: str


def _members_only(predicate: str) -> TablePolicies:
    return TablePolicies(predicate, predicate, predicate, predicate, predicate)


def _read_by_all(*, insert: str, write: str) -> TablePolicies:
    return TablePolicies("true", insert, write, write, write)


TABLE_POLICIES: dict[str, TablePolicies] = {
    "user_account": TablePolicies(
        select="true",  # names, for sharing and for the admin's lists
        insert="username = session_user AND NOT is_superuser",
        # Column grants leave a user only `is_superuser` of their own row, and only to false.
        update="username = session_user",
        update_check="username = session_user AND NOT is_superuser",
        delete="false",
    ),
    "user_settings": _members_only(_OWN),
    "user_group": _read_by_all(insert="name = 'All'", write="false"),
    "link_user_group": _read_by_all(
        insert=f"{_OWN} AND group_id IN (SELECT id FROM user_group WHERE name = 'All')",
        write="false",
    ),
    "project": TablePolicies(
        select="id IN (SELECT fractal_member_projects())",
        insert="true",  # and its first member is its creator: see link_user_project
        update="id IN (SELECT fractal_member_projects())",
        update_check="true",
        delete="id IN (SELECT fractal_member_projects())",
    ),
    "link_user_project": TablePolicies(
        select=_MEMBER_PROJECT,
        insert=f"{_MEMBER_PROJECT} OR ({_OWN} AND fractal_project_is_new(project_id))",
        update="false",
        update_check="false",
        delete=_MEMBER_PROJECT,
    ),
    "dataset": _members_only(_MEMBER_PROJECT),
    "workflow": _members_only(_MEMBER_PROJECT),
    "workflow_task": _members_only("workflow_id IN (SELECT fractal_member_workflows())"),
    # A job outlives its project (project_id is set NULL) and stays its submitter's.
    "job": _members_only(f"{_MEMBER_PROJECT} OR owner = session_user"),
    "image": _members_only(_MEMBER_DATASET),
    "image_attribute": _members_only(_MEMBER_DATASET),
    "image_type": _members_only(_MEMBER_DATASET),
    "attribute_summary": _members_only(_MEMBER_DATASET),
    "type_summary": _members_only(_MEMBER_DATASET),
    "image_status": _members_only(_MEMBER_DATASET),
    "image_status_summary": _members_only(_MEMBER_DATASET),
    "history_run": _members_only(_MEMBER_DATASET),
    "history_unit": _members_only("history_run_id IN (SELECT fractal_member_runs())"),
    "task": _read_by_all(insert=_OWN_TASK, write=_OWN_TASK),
    # Any user may mark a group shared with them as used (a job of theirs ran its tasks); the
    # trigger `fractal_task_group_guard` refuses every other change of a group not theirs.
    "task_group": TablePolicies("true", _OWN, "true", "true", _OWN),
    "task_group_activity": _members_only(_OWN),
    "collection_state": _members_only("true"),  # fractal-server 2.6.4 shows them to everyone
}

# One statement each: asyncpg prepares what it runs, and a prepared statement is one command.
_FUNCTIONS = (
    f"""
CREATE OR REPLACE FUNCTION fractal_admins() RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN QUERY SELECT member.rolname::text FROM pg_auth_members AS link
        JOIN pg_roles AS member ON member.oid = link.member
        WHERE link.roleid = (SELECT oid FROM pg_roles WHERE rolname = '{ADMIN_ROLE}');
END
$$
""",
    f"""
CREATE OR REPLACE FUNCTION fractal_is_admin() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM pg_auth_members AS link
        JOIN pg_roles AS member ON member.oid = link.member
        WHERE link.roleid = (SELECT oid FROM pg_roles WHERE rolname = '{ADMIN_ROLE}')
          AND member.rolname = session_user
    );
END
$$
""",
    """
CREATE OR REPLACE FUNCTION fractal_user_id() RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN (SELECT id FROM user_account WHERE username = session_user);
END
$$
""",
    """
CREATE OR REPLACE FUNCTION fractal_member_projects() RETURNS SETOF integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN QUERY SELECT link.project_id FROM link_user_project AS link
        JOIN user_account AS account ON account.id = link.user_id
        WHERE account.username = session_user;
END
$$
""",
    """
CREATE OR REPLACE FUNCTION fractal_member_datasets() RETURNS SETOF integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN QUERY SELECT dataset.id FROM dataset
        JOIN link_user_project AS link ON link.project_id = dataset.project_id
        JOIN user_account AS account ON account.id = link.user_id
        WHERE account.username = session_user;
END
$$
""",
    """
CREATE OR REPLACE FUNCTION fractal_member_workflows() RETURNS SETOF integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN QUERY SELECT workflow.id FROM workflow
        JOIN link_user_project AS link ON link.project_id = workflow.project_id
        JOIN user_account AS account ON account.id = link.user_id
        WHERE account.username = session_user;
END
$$
""",
    """
CREATE OR REPLACE FUNCTION fractal_member_runs() RETURNS SETOF integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    RETURN QUERY SELECT run.id FROM history_run AS run
        JOIN dataset ON dataset.id = run.dataset_id
        JOIN link_user_project AS link ON link.project_id = dataset.project_id
        JOIN user_account AS account ON account.id = link.user_id
        WHERE account.username = session_user;
END
$$
""",
    # A project made by the current transaction that has no member yet: its maker may become its
    # first member. Nobody can claim another user's project, nor one whose members all left.
    """
CREATE OR REPLACE FUNCTION fractal_project_is_new(checked integer) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT EXISTS (
        SELECT 1 FROM project WHERE id = checked AND xmin = pg_current_xact_id()::xid
    ) AND NOT EXISTS (SELECT 1 FROM link_user_project WHERE project_id = checked)
$$
""",
    """
CREATE OR REPLACE FUNCTION fractal_task_group_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER')
       AND NOT fractal_is_admin()
       AND OLD.user_id IS DISTINCT FROM fractal_user_id()
       AND (to_jsonb(NEW) - 'timestamp_last_used') IS DISTINCT FROM
           (to_jsonb(OLD) - 'timestamp_last_used') THEN
        RAISE EXCEPTION 'task group % is not yours: only its owner or a Fractal administrator '
            'may change it', OLD.id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$
""",
)


def _create_roles() -> list[str]:
    """The two group roles, made when missing (needs CREATEROLE the first time only)."""
    return [
        f"""DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} NOLOGIN;
    END IF;
END $$"""
        for role in (USER_ROLE, ADMIN_ROLE)
    ]


def _grants(tables: list[str]) -> list[str]:
    listed = ", ".join(f'"{table}"' for table in tables)
    return [
        f"GRANT {USER_ROLE} TO {ADMIN_ROLE}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {USER_ROLE}",
        f"GRANT SELECT ON alembic_version TO {USER_ROLE}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {listed} TO {USER_ROLE}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {USER_ROLE}",
        # A user's own row: only the administrator flag, which the policy allows only off.
        f"REVOKE UPDATE, DELETE ON user_account FROM {USER_ROLE}",
        f"GRANT UPDATE (is_superuser) ON user_account TO {USER_ROLE}",
        f"GRANT UPDATE, DELETE ON user_account TO {ADMIN_ROLE}",
    ]


def _table_statements(table: str, policies: TablePolicies) -> list[str]:
    def admin_or(predicate: str) -> str:
        return f"({predicate}) OR (SELECT fractal_is_admin())"

    statements = [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        *(
            f'DROP POLICY IF EXISTS fractal_{command} ON "{table}"'
            for command in ("select", "insert", "update", "delete")
        ),
        f'CREATE POLICY fractal_select ON "{table}" FOR SELECT USING ({admin_or(policies.select)})',
        f'CREATE POLICY fractal_insert ON "{table}" FOR INSERT '
        f"WITH CHECK ({admin_or(policies.insert)})",
        f'CREATE POLICY fractal_update ON "{table}" FOR UPDATE USING ({admin_or(policies.update)}) '
        f"WITH CHECK ({admin_or(policies.update_check)})",
        f'CREATE POLICY fractal_delete ON "{table}" FOR DELETE USING ({admin_or(policies.delete)})',
    ]
    return statements


def statements() -> list[str]:
    """Everything `install` runs, in order."""
    from .models import Base

    tables = [table.name for table in Base.metadata.sorted_tables]
    missing = sorted(set(tables) - set(TABLE_POLICIES))
    if missing:
        raise RuntimeError(f"tables without row-security policies: {', '.join(missing)}")
    result = [*_create_roles(), *_FUNCTIONS, *_grants(tables)]
    for table in tables:
        result += _table_statements(table, TABLE_POLICIES[table])
    result += [
        "DROP TRIGGER IF EXISTS fractal_task_group_guard ON task_group",
        "CREATE TRIGGER fractal_task_group_guard BEFORE UPDATE ON task_group "
        "FOR EACH ROW EXECUTE FUNCTION fractal_task_group_guard()",
    ]
    return result


def install(connection: Connection) -> None:
    """(Re)write roles, functions, grants and policies, within the caller's transaction."""
    for statement in statements():
        connection.exec_driver_sql(statement)


def is_installed(connection: Connection) -> bool:
    return bool(
        connection.execute(
            text("SELECT to_regprocedure(:name) IS NOT NULL"), {"name": MARKER_FUNCTION}
        ).scalar()
    )


@dataclass(frozen=True)
class DatabaseIdentity:
    """Who a server is to a database with row security: its login role, and the users the
    database takes for administrators (which replace `FractalJupyter.admin_users`)."""

    role: str
    admins: frozenset[str]


def read_identity(connection: Connection) -> DatabaseIdentity | None:
    """None where row security is not installed (SQLite included)."""
    if connection.dialect.name != "postgresql" or not is_installed(connection):
        return None
    role = str(connection.execute(text("SELECT session_user")).scalar())
    admins = connection.execute(text("SELECT fractal_admins()")).scalars()
    return DatabaseIdentity(role, frozenset(str(name) for name in admins))
