"""Offline validation of the Bicep in infra/.

No Bicep compiler can run here, so these tests parse every file with pycep-parser and assert the
architecture from the parsed structure: plan and runtime, identity-based connections, least-
privilege role assignments, the Key Vault reference, the app settings against the app's own list
(shared/settings.py), the VNet option, the alerts and the parameter files. A checkov scan (in its
own virtual environment, see scripts/checkov.sh) must parse every file and report no failed check;
each suppressed check carries its reason inline in the Bicep (`// checkov:skip=ID: reason`).

None of this needs the local stack of servers.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"
MAIN = INFRA / "main.bicep"
PARAM_FILES = {"dev": INFRA / "env" / "dev.bicepparam", "prod": INFRA / "env" / "prod.bicepparam"}
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Built-in role definition ids (the same in every tenant).
ROLE = {
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

# Settings the issue requires in the Bicep app settings, and the ones the identity replaces.
REQUIRED_APP_SETTINGS = {
    "MONGO_URI", "MONGO_DB", "MONGO_COLL", "MONGO_PIPELINE", "MONGO_FULL_DOC", "MONGO_FULL_DOC_BEFORE_CHANGE",
    "ADLS_ACCOUNT_URL", "ADLS_FILESYSTEM", "CHECKPOINT_TABLE", "CHECKPOINT_ACCOUNT_URL", "PIPELINE_NAME",
    "DRAIN_SCHEDULE", "DRAIN_BUDGET_SECONDS", "START_AT", "JSON_MODE", "ROLL_WINDOW", "ROLL_MAX_BYTES",
    "MAX_BUFFER_BYTES", "FILE_LAYOUT", "PER_EVENT_CONCURRENCY", "ON_HISTORY_LOST", "STATUS_MAX_POSITION_AGE_SECONDS", "AZURE_CLIENT_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD",
}
FORBIDDEN_APP_SETTINGS = {
    "ADLS_SAS", "ADLS_SHARED_KEY", "ADLS_CONNECTION_STRING", "CHECKPOINT_CONNECTION_STRING",
}
PLATFORM_PREFIXES = ("FUNCTIONS_", "AzureWebJobs", "WEBSITE_", "APPLICATIONINSIGHTS_", "SCM_")
PLATFORM_NAMES = {"AZURE_CLIENT_ID", "ENABLE_ORYX_BUILD"}

CHECKOV_TIMEOUT = 600


# ------------------------------------------------------------------------------------------------
# Parsing helpers
# ------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _parser() -> BicepParser:
    return BicepParser()


@functools.lru_cache(maxsize=None)
def parse(path: Path) -> dict[str, Any]:
    return _parser().parse(file_path=path)


def module(name: str) -> dict[str, Any]:
    return parse(MODULES / f"{name}.bicep")


def main() -> dict[str, Any]:
    return parse(MAIN)


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """The object of a resource or module, looking through an `if (...)` condition."""
    config = resource["config"]
    return config["config"] if "condition" in config and "config" in config else config


def condition(resource: dict[str, Any]) -> Any:
    return resource["config"].get("condition")


def resources_of(doc: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc.get("resources", {}).items() if v["type"] == rtype}


def the_resource(doc: dict[str, Any], rtype: str) -> tuple[str, dict[str, Any]]:
    found = {k: v for k, v in resources_of(doc, rtype).items() if not v["existing"]}
    assert len(found) == 1, f"expected one {rtype}, found {sorted(found)}"
    return next(iter(found.items()))


def accessor(value: Any) -> str | None:
    """`a.b.c` as a dotted string, or None if the value is not a plain property access."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        ops = value["operator"]["operands"]
        left, right = accessor(ops["operand_1"]), accessor(ops["operand_2"])
        if left is not None and right is not None:
            return f"{left}.{right}"
    return None


def param_default(doc: dict[str, Any], name: str) -> Any:
    return doc["parameters"][name].get("default")


def decorators(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in doc["parameters"][name]["decorators"]}


def parent_chain(doc: dict[str, Any], symbol: str) -> list[str]:
    chain = [symbol]
    while (parent := body(doc["resources"][chain[-1]]).get("parent")) is not None:
        chain.append(parent)
    return chain


def role_assignments() -> list[dict[str, Any]]:
    """Every role assignment in the modules, its role resolved to the built-in role id."""
    found = []
    for path in sorted(MODULES.glob("*.bicep")):
        doc = parse(path)
        for symbol, res in resources_of(doc, "Microsoft.Authorization/roleAssignments").items():
            cfg = body(res)
            role_def = cfg["properties"]["roleDefinitionId"]["function"]
            assert role_def["type"] == "subscription_resource_id", (
                f"{path.name}:{symbol} role not a built-in id")
            assert role_def["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
            role_ref = role_def["parameters"]["resource_name_1"]
            role_id = doc.get("variables", {}).get(role_ref, {}).get("value", role_ref)
            found.append({
                "file": path.stem,
                "symbol": symbol,
                "role": role_id,
                "scope": cfg.get("scope"),
                "principalId": cfg["properties"]["principalId"],
                "principalType": cfg["properties"].get("principalType"),
                "doc": doc,
            })
    return found


def app_settings() -> dict[str, Any]:
    """Every app setting the Bicep sets: the platform ones of the module plus the app's own."""
    site_doc = module("functionapp")
    _, site = the_resource(site_doc, "Microsoft.Web/sites")
    combined = body(site)["properties"]["siteConfig"]["appSettings"]["function"]
    assert combined["type"] == "concat"
    assert list(combined["parameters"].values()) == ["platformSettings", "ownSettings"]
    platform_list = site_doc["variables"]["platformSettings"]["value"]
    platform = {item["name"]: item["value"] for item in platform_list}
    assert len(platform) == len(platform_list), "a platform setting is set twice"
    own_loop = site_doc["variables"]["ownSettings"]["value"]
    source = own_loop["loop_type"]["detail"]["array_name"]["function"]
    assert source["type"] == "items" and source["parameters"]["arg_1"] == "appSettings"
    assert accessor(own_loop["config"]["name"]) == "setting.key"
    assert accessor(own_loop["config"]["value"]) == "setting.value"
    passed = main()["modules"]["functionApp"]["config"]["params"]["appSettings"]
    own = main()["variables"][passed]["value"]
    overlap = set(platform) & set(own)
    assert not overlap, f"app settings set twice: {overlap}"
    return {**platform, **own}


def parse_bicepparam(path: Path) -> tuple[str, dict[str, Any]]:
    """(using path, {param: parsed value}). pycep has no `using`: parse the params as variables."""
    text = path.read_text()
    using = re.findall(r"^using\s+'([^']+)'\s*$", text, flags=re.M)
    assert len(using) == 1, f"{path.name}: expected one `using '...'` line"
    rewritten = re.sub(r"^using\s+.*$", "", text, flags=re.M)
    rewritten = re.sub(r"^param\s+", "var ", rewritten, flags=re.M)
    doc = _parser().parse(text=rewritten)
    return using[0], {k: v["value"] for k, v in doc.get("variables", {}).items()}


def settings_module():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from shared import settings  # noqa: PLC0415 (the app's single list of settings)

    return settings


# ------------------------------------------------------------------------------------------------
# Every file parses; the modules hang together
# ------------------------------------------------------------------------------------------------

def test_infra_has_main_modules_and_param_files():
    assert MAIN.is_file()
    assert len(list(MODULES.glob("*.bicep"))) >= 5
    for path in PARAM_FILES.values():
        assert path.is_file(), path


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_file_parses(path):
    doc = parse(path)
    assert doc.get("resources") or doc.get("modules"), f"{path.name} declares nothing"


@pytest.mark.parametrize("env", sorted(PARAM_FILES))
def test_param_file_parses(env):
    using, values = parse_bicepparam(PARAM_FILES[env])
    assert values


def test_main_uses_every_module_and_each_module_exists():
    used = {(INFRA / m["detail"]["path"]).resolve() for m in main()["modules"].values()}
    for path in used:
        assert path.is_file(), f"main.bicep refers to a missing module {path.name}"
    assert used == {p.resolve() for p in MODULES.glob("*.bicep")}, "a module is not used by main.bicep"


def test_module_params_exist_and_required_ones_are_passed():
    for name, mod in main()["modules"].items():
        target = parse((INFRA / mod["detail"]["path"]).resolve())
        passed = set(body(mod)["params"])
        declared = target.get("parameters", {})
        assert passed <= set(declared), f"{name}: unknown params {passed - set(declared)}"
        required = {p for p, spec in declared.items() if "default" not in spec}
        assert required <= passed, f"{name}: required params not passed: {required - passed}"


# ------------------------------------------------------------------------------------------------
# Naming, location, tags
# ------------------------------------------------------------------------------------------------

def test_location_name_prefix_environment_and_unique_names():
    doc = main()
    assert accessor(param_default(doc, "location")) is None  # an expression, not a fixed region
    default = param_default(doc, "location")["operator"]["operands"]
    assert default["operand_1"]["function"]["type"] == "resource_group"
    assert default["operand_2"] == "location"
    assert "namePrefix" in doc["parameters"] and "environmentName" in doc["parameters"]
    assert doc["variables"]["suffix"]["value"]["function"]["type"] == "unique_string"
    names = doc["variables"]["names"]["value"]
    for key in ("hostStorage", "lakeStorage", "checkpointStorage", "keyVault", "functionApp"):
        assert "${suffix}" in json.dumps(names[key]) or "suffix" in json.dumps(names[key]), key


def test_every_top_level_resource_is_tagged():
    untaggable = {"Microsoft.Authorization/roleAssignments"}
    for path in sorted(MODULES.glob("*.bicep")):
        doc = parse(path)
        for symbol, res in doc.get("resources", {}).items():
            cfg = body(res)
            if res["existing"] or "parent" in cfg or res["type"] in untaggable:
                continue
            if res["type"] == "Microsoft.Insights/diagnosticSettings":  # an extension, not taggable
                continue
            tags = cfg.get("tags")
            if res["type"] == "Microsoft.Web/sites":  # plus the tag azd finds the app by
                assert tags["function"]["type"] == "union" and tags["function"]["parameters"]["arg_1"] == "tags"
                continue
            assert tags == "tags", f"{path.name}:{symbol} is not tagged"
            assert "tags" in doc["parameters"]
    for name, mod in main()["modules"].items():
        assert body(mod)["params"].get("tags") == "allTags", f"module {name} does not get the tags"


# ------------------------------------------------------------------------------------------------
# Plan and function app
# ------------------------------------------------------------------------------------------------

def test_plan_is_linux_elastic_premium_ep1_by_default():
    doc = module("functionapp")
    _, plan = the_resource(doc, "Microsoft.Web/serverfarms")
    cfg = body(plan)
    assert cfg["kind"] == "elastic"
    assert cfg["sku"]["tier"] == "ElasticPremium"
    assert cfg["properties"]["reserved"] is True
    assert cfg["sku"]["name"] == "planSku"
    for doc_ in (doc, main()):
        assert param_default(doc_, "planSku") == "EP1"
        assert set(decorators(doc_, "planSku")["allowed"]) <= {"EP1", "EP2", "EP3"}
    assert body(main()["modules"]["functionApp"])["params"]["planSku"] == "planSku"


def test_function_app_is_python_311_on_linux_with_always_ready_instances():
    doc = module("functionapp")
    _, site = the_resource(doc, "Microsoft.Web/sites")
    cfg = body(site)
    assert cfg["kind"] == "functionapp,linux"
    props = cfg["properties"]
    assert props["httpsOnly"] is True
    site_config = props["siteConfig"]
    assert site_config["linuxFxVersion"] == "Python|3.11"
    assert site_config["ftpsState"] == "Disabled"
    for prop, param in (("minimumElasticInstanceCount", "alwaysReadyInstances"),
                        ("preWarmedInstanceCount", "preWarmedInstances")):
        assert site_config[prop] == param
        for doc_ in (doc, main()):
            assert param_default(doc_, param) >= 1
            assert decorators(doc_, param)["min_value"] >= 1
    settings = app_settings()
    assert settings["FUNCTIONS_EXTENSION_VERSION"] == "~4"
    assert settings["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_app_runs_as_the_user_assigned_identity():
    doc = module("functionapp")
    _, site = the_resource(doc, "Microsoft.Web/sites")
    cfg = body(site)
    assert cfg["identity"]["type"] == "UserAssigned"
    assert [k.strip("'") for k in cfg["identity"]["userAssignedIdentities"]] == ["${identityId}"]
    assert cfg["properties"]["keyVaultReferenceIdentity"] == "identityId"
    params = body(main()["modules"]["functionApp"])["params"]
    assert accessor(params["identityId"]) == "identity.outputs.id"
    assert accessor(params["identityClientId"]) == "identity.outputs.clientId"
    assert the_resource(module("identity"), "Microsoft.ManagedIdentity/userAssignedIdentities")


def test_host_storage_is_identity_based():
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings, "no connection string for the host storage"
    assert settings["AzureWebJobsStorage__accountName"] == "${hostStorage.name}" or accessor(
        settings["AzureWebJobsStorage__accountName"]) == "hostStorage.name"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "appInsightsConnectionString"
    params = body(main()["modules"]["functionApp"])["params"]
    assert accessor(params["hostStorageName"]) == "hostStorage.outputs.name"
    assert accessor(params["appInsightsConnectionString"]) == "monitoring.outputs.connectionString"


def test_content_share_key_is_built_inside_bicep_and_never_a_parameter_or_output():
    settings = app_settings()
    conn = settings["WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"]
    assert isinstance(conn, str) and "AccountKey=${hostStorage.listKeys().keys[0].value}" in conn
    assert settings["WEBSITE_CONTENTSHARE"] == "contentShareName"
    for path in BICEP_FILES:
        doc = parse(path)
        for name in doc.get("parameters", {}):
            keyish = r"accountkey|sharedkey|storagekey|sas|storageconnection|sharekey"
            assert not re.search(keyish, name, re.I), (
                f"{path.name}: parameter {name} looks like a storage key")
            if "secure" in decorators(doc, name):
                assert name == "mongoUri", f"{path.name}: unexpected secure parameter {name}"
        for name, out in doc.get("outputs", {}).items():
            assert "listKeys" not in json.dumps(out), f"{path.name}: output {name} exposes a key"
    # Only the host account, which serves the content share, keeps shared-key access.
    _, host = the_resource(module("host-storage"), "Microsoft.Storage/storageAccounts")
    assert body(host)["properties"]["allowSharedKeyAccess"] is True
    assert resources_of(module("host-storage"), "Microsoft.Storage/storageAccounts/fileServices/shares")


def test_one_publish_path_a_remote_build():
    """Core Tools removes WEBSITE_RUN_FROM_PACKAGE on a remote build and an infrastructure deployment
    would put it back: the Bicep asks for the remote build instead, as docs/deploy.md does."""
    settings = app_settings()
    assert "WEBSITE_RUN_FROM_PACKAGE" not in settings
    assert settings["SCM_DO_BUILD_DURING_DEPLOYMENT"] == "true"
    assert settings["ENABLE_ORYX_BUILD"] == "true"
    guide = (ROOT / "docs" / "deploy.md").read_text()
    assert "func azure functionapp publish" in guide and "--build remote" in guide
    assert "config-zip" not in guide, "a second publish path"


def test_basic_auth_publishing_is_disabled_on_scm_and_ftp():
    doc = module("functionapp")
    site_symbol, _ = the_resource(doc, "Microsoft.Web/sites")
    policies = resources_of(doc, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    found = {body(r)["name"]: body(r) for r in policies.values()}
    assert set(found) == {"scm", "ftp"}
    for cfg in found.values():
        assert cfg["parent"] == site_symbol and cfg["properties"]["allow"] is False


# Diagnostic settings: module -> {scoped resource type: log categories}.
DIAGNOSTICS = {
    "functionapp": {"Microsoft.Web/sites": {"FunctionAppLogs"}},
    "keyvault": {"Microsoft.KeyVault/vaults": {"AuditEvent"}},
    "lake": {"Microsoft.Storage/storageAccounts/blobServices": {"StorageRead", "StorageWrite", "StorageDelete"}},
    "checkpoints": {"Microsoft.Storage/storageAccounts/tableServices": {"StorageRead", "StorageWrite", "StorageDelete"}},
    "host-storage": {
        "Microsoft.Storage/storageAccounts/blobServices": {"StorageRead", "StorageWrite", "StorageDelete"},
        "Microsoft.Storage/storageAccounts/tableServices": {"StorageRead", "StorageWrite", "StorageDelete"},
        "Microsoft.Storage/storageAccounts/fileServices": {"StorageRead", "StorageWrite", "StorageDelete"},
    },
}


@pytest.mark.parametrize("file", sorted(DIAGNOSTICS))
def test_diagnostic_settings_send_the_logs_to_log_analytics(file):
    doc = module(file)
    got: dict[str, set[str]] = {}
    for symbol, res in resources_of(doc, "Microsoft.Insights/diagnosticSettings").items():
        cfg = body(res)
        assert cfg["properties"]["workspaceId"] == "workspaceId", symbol
        logs = cfg["properties"]["logs"]
        if isinstance(logs, str):  # a variable holding the list
            logs = doc["variables"][logs]["value"]
        assert all(entry["enabled"] is True for entry in logs), symbol
        got[doc["resources"][cfg["scope"]]["type"]] = {entry["category"] for entry in logs}
    assert got == DIAGNOSTICS[file]
    module_symbol = {"functionapp": "functionApp", "keyvault": "keyVault", "lake": "lake",
                     "checkpoints": "checkpoints", "host-storage": "hostStorage"}[file]
    assert accessor(body(main()["modules"][module_symbol])["params"]["workspaceId"]) == "monitoring.outputs.workspaceId"


def test_a_redeploy_after_deleting_the_resource_group_can_recover_or_rename_the_vault():
    doc = module("keyvault")
    _, vault = the_resource(doc, "Microsoft.KeyVault/vaults")
    assert body(vault)["properties"]["createMode"] == "createMode"
    assert param_default(doc, "createMode") == "default"
    assert set(decorators(doc, "createMode")["allowed"]) == {"default", "recover"}
    assert body(main()["modules"]["keyVault"])["params"]["createMode"] == "keyVaultCreateMode"
    assert param_default(main(), "keyVaultCreateMode") == "default"
    name = json.dumps(main()["variables"]["names"]["value"]["keyVault"])
    assert "keyVaultNameSeed" in name and "suffix" in name
    for env in PARAM_FILES:
        mode = parse_bicepparam(PARAM_FILES[env])[1]["keyVaultCreateMode"]["function"]
        assert mode["type"] == "readEnvironmentVariable"
        assert mode["parameters"]["arg_2"] == "default"


# ------------------------------------------------------------------------------------------------
# Lake, checkpoint table, Key Vault
# ------------------------------------------------------------------------------------------------

def test_lake_account_is_adls_gen2_with_the_file_system_and_no_shared_key():
    doc = module("lake")
    symbol, lake = the_resource(doc, "Microsoft.Storage/storageAccounts")
    props = body(lake)["properties"]
    assert props["isHnsEnabled"] is True
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    fs_symbol, fs = the_resource(doc, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert body(fs)["name"] == "fileSystemName"
    assert parent_chain(doc, fs_symbol)[-1] == symbol
    # The lake account holds only the lake: no tables, queues or shares.
    for rtype in ("tableServices/tables", "queueServices/queues", "fileServices/shares"):
        assert not resources_of(doc, f"Microsoft.Storage/storageAccounts/{rtype}")


def test_host_and_checkpoint_accounts_are_separate_from_the_lake():
    mods = main()["modules"]
    names = {k: accessor(body(mods[k])["params"]["name"]) for k in ("hostStorage", "lake", "checkpoints")}
    assert len(set(names.values())) == 3, names
    for name in ("host-storage", "checkpoints"):
        _, acct = the_resource(module(name), "Microsoft.Storage/storageAccounts")
        assert body(acct)["properties"].get("isHnsEnabled") in (None, False), name


def test_checkpoint_table_lives_in_its_own_account_without_shared_keys():
    doc = module("checkpoints")
    symbol, acct = the_resource(doc, "Microsoft.Storage/storageAccounts")
    assert body(acct)["properties"]["allowSharedKeyAccess"] is False
    table_symbol, table = the_resource(doc, "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert body(table)["name"] == "tableName"
    assert parent_chain(doc, table_symbol)[-1] == symbol


def test_lake_and_checkpoint_endpoints_are_urls_without_keys():
    settings = app_settings()
    assert re.fullmatch(r"https://\$\{lake\.outputs\.name\}\.dfs\.\$\{environment\(\)\.suffixes\.storage\}",
                        settings["ADLS_ACCOUNT_URL"])
    assert re.fullmatch(
        r"https://\$\{checkpoints\.outputs\.name\}\.table\.\$\{environment\(\)\.suffixes\.storage\}",
        settings["CHECKPOINT_ACCOUNT_URL"])
    assert accessor(settings["ADLS_FILESYSTEM"]) == "lake.outputs.fileSystemName"
    assert accessor(settings["CHECKPOINT_TABLE"]) == "checkpoints.outputs.tableName"
    mods = main()["modules"]
    assert mods["lake"]["detail"]["path"] == "modules/lake.bicep"
    assert mods["checkpoints"]["detail"]["path"] == "modules/checkpoints.bicep"


def test_key_vault_uses_rbac_and_the_mongo_uri_is_a_key_vault_reference():
    doc = module("keyvault")
    _, vault = the_resource(doc, "Microsoft.KeyVault/vaults")
    props = body(vault)["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    assert "accessPolicies" not in props
    _, secret = the_resource(doc, "Microsoft.KeyVault/vaults/secrets")
    assert body(secret)["properties"]["value"] == "mongoUri"
    assert body(secret)["name"] == "mongoUriSecretName"
    assert "secure" in decorators(doc, "mongoUri")
    assert "secure" in decorators(main(), "mongoUri")
    # Versionless URI: a new secret version is picked up without redeploying.
    secret_uri = doc["outputs"]["mongoUriSecretUri"]["value"]
    assert secret_uri == "${vault.properties.vaultUri}secrets/${mongoUriSecretName}"
    mongo_uri = app_settings()["MONGO_URI"]
    assert mongo_uri == "@Microsoft.KeyVault(SecretUri=${keyVault.outputs.mongoUriSecretUri})"
    assert body(main()["modules"]["keyVault"])["params"]["mongoUri"] == "mongoUri"


# ------------------------------------------------------------------------------------------------
# Least-privilege role assignments
# ------------------------------------------------------------------------------------------------

def test_role_assignments_are_exactly_the_least_privilege_set():
    got = {(ra["file"], ra["role"]) for ra in role_assignments()}
    assert got == {
        ("lake", ROLE["Storage Blob Data Contributor"]),
        ("checkpoints", ROLE["Storage Table Data Contributor"]),
        ("host-storage", ROLE["Storage Blob Data Owner"]),
        # The host's diagnostic events (Microsoft's list for identity-based AzureWebJobsStorage).
        ("host-storage", ROLE["Storage Table Data Contributor"]),
        ("keyvault", ROLE["Key Vault Secrets User"]),
        # Entra ID ingestion into Application Insights.
        ("monitoring", ROLE["Monitoring Metrics Publisher"]),
    }


def test_role_assignment_scopes():
    for ra in role_assignments():
        doc, scope = ra["doc"], ra["scope"]
        assert scope, f"{ra['file']}:{ra['symbol']} has no scope (it would apply to the resource group)"
        scoped = doc["resources"][scope]
        if ra["file"] == "lake":
            # The lake file system, or the lake account itself: nothing wider.
            assert scoped["type"] in ("Microsoft.Storage/storageAccounts/blobServices/containers",
                                      "Microsoft.Storage/storageAccounts")
            assert parent_chain(doc, scope)[-1] == the_resource(doc, "Microsoft.Storage/storageAccounts")[0]
        elif ra["file"] == "checkpoints":
            account = the_resource(doc, "Microsoft.Storage/storageAccounts")[0]
            table = the_resource(doc, "Microsoft.Storage/storageAccounts/tableServices/tables")[0]
            assert scope in (account, table)
            assert parent_chain(doc, table)[-1] == account
        elif ra["file"] == "host-storage":
            assert scope == the_resource(doc, "Microsoft.Storage/storageAccounts")[0]
        elif ra["file"] == "keyvault":
            assert scope == the_resource(doc, "Microsoft.KeyVault/vaults")[0]
        elif ra["file"] == "monitoring":
            assert scope == the_resource(doc, "Microsoft.Insights/components")[0]
        else:
            raise AssertionError(f"unexpected role assignment in {ra['file']}")
        assert ra["principalId"] == "principalId"
        assert ra["principalType"] == "ServicePrincipal"


def test_role_assignments_go_to_the_app_identity():
    for name in ("hostStorage", "lake", "checkpoints", "keyVault", "monitoring"):
        params = body(main()["modules"][name])["params"]
        assert accessor(params["principalId"]) == "identity.outputs.principalId", name


# ------------------------------------------------------------------------------------------------
# App settings against shared/settings.py (one source of truth)
# ------------------------------------------------------------------------------------------------

def is_platform(name: str) -> bool:
    return name.startswith(PLATFORM_PREFIXES) or name in PLATFORM_NAMES


def test_required_settings_are_set_and_key_based_ones_are_not():
    names = set(app_settings())
    assert REQUIRED_APP_SETTINGS <= names, f"missing: {sorted(REQUIRED_APP_SETTINGS - names)}"
    replaced = FORBIDDEN_APP_SETTINGS & names
    assert not replaced, f"secrets the identity replaces: {sorted(replaced)}"


def test_app_settings_match_the_settings_module():
    settings = settings_module()
    specs = {s.name: s for s in settings.SETTINGS}
    bicep = app_settings()
    app_names = {n for n in bicep if not is_platform(n)}
    unknown = app_names - set(specs)
    assert not unknown, f"set in Bicep but unknown to shared/settings.py: {sorted(unknown)}"
    non_secret = {n for n, s in specs.items() if not s.secret}
    unset = non_secret - set(bicep)
    assert not unset, f"read by the app but not set in Bicep: {sorted(unset)}"
    # A secret may be set only as a Key Vault reference.
    for name in app_names:
        if specs[name].secret:
            assert str(bicep[name]).startswith("@Microsoft.KeyVault(SecretUri="), name


def _bicep_param_for(value: Any) -> str | None:
    if isinstance(value, str) and value in main()["parameters"]:
        return value
    if isinstance(value, dict) and value.get("function", {}).get("type") == "string":
        inner = value["function"]["parameters"]["value_to_convert"]
        return inner if inner in main()["parameters"] else None
    return None


def test_parameter_defaults_match_the_app_defaults():
    specs = {s.name: s for s in settings_module().SETTINGS}
    own = main()["variables"]["appSettings"]["value"]
    checked = 0
    for name, value in own.items():
        param = _bicep_param_for(value)
        if param is None or specs[name].default is None:
            continue
        default = param_default(main(), param)
        if isinstance(default, bool) or not isinstance(default, (str, int)):
            continue
        assert str(default) == specs[name].default, (
            f"{name}: Bicep param {param} defaults to {default!r}, the app to {specs[name].default!r}")
        checked += 1
    assert checked >= 10


# ------------------------------------------------------------------------------------------------
# VNet option
# ------------------------------------------------------------------------------------------------

def test_vnet_integration_is_optional_and_delegated_to_server_farms():
    doc = main()
    assert doc["parameters"]["enableVnetIntegration"]["type"] == "bool"
    assert param_default(doc, "enableVnetIntegration") is False
    assert condition(doc["modules"]["network"]) == "enableVnetIntegration"
    subnet_id = body(doc["modules"]["functionApp"])["params"]["subnetId"]["operator"]
    assert subnet_id["type"] == "conditional"
    assert subnet_id["operands"]["condition"] == "enableVnetIntegration"
    assert accessor(subnet_id["operands"]["true_value"]) == "network.outputs.appSubnetId"

    net = module("network")
    _, vnet = the_resource(net, "Microsoft.Network/virtualNetworks")
    subnets = {s["name"]: s["properties"] for s in body(vnet)["properties"]["subnets"]}
    delegations = [d["properties"]["serviceName"] for d in subnets["snet-app"].get("delegations", [])]
    assert delegations == ["Microsoft.Web/serverFarms"]
    assert "snet-app" in json.dumps(net["resources"]["appSubnet"])
    assert accessor(net["outputs"]["appSubnetId"]["value"]) == "appSubnet.id"
    assert resources_of(net, "Microsoft.Network/privateEndpoints")

    app = module("functionapp")
    props = body(the_resource(app, "Microsoft.Web/sites")[1])["properties"]
    vnet_subnet = props["virtualNetworkSubnetId"]["operator"]
    assert vnet_subnet["type"] == "conditional" and vnet_subnet["operands"]["true_value"] == "subnetId"
    assert props["vnetRouteAllEnabled"] == "vnetEnabled"


# ------------------------------------------------------------------------------------------------
# Monitoring and alerts
# ------------------------------------------------------------------------------------------------

def test_application_insights_is_workspace_based():
    doc = module("monitoring")
    ws_symbol, _ = the_resource(doc, "Microsoft.OperationalInsights/workspaces")
    _, ai = the_resource(doc, "Microsoft.Insights/components")
    assert accessor(body(ai)["properties"]["WorkspaceResourceId"]) == f"{ws_symbol}.id"


def test_alerts_on_failures_stalls_and_position_age_notify_the_action_group():
    doc = module("alerts")
    ag_symbol, ag = the_resource(doc, "Microsoft.Insights/actionGroups")
    receivers = json.dumps(body(ag)["properties"]["emailReceivers"])
    assert "alertEmail" in receivers
    rules = resources_of(doc, "Microsoft.Insights/scheduledQueryRules")
    assert len(rules) >= 3
    queries = {}
    for symbol, rule in rules.items():
        props = body(rule)["properties"]
        assert props["scopes"] == ["appInsightsId"], symbol
        assert props["actions"]["actionGroups"] == [f"{ag_symbol}.id"] or [
            accessor(a) for a in props["actions"]["actionGroups"]] == [f"{ag_symbol}.id"], symbol
        assert props["enabled"] is True
        queries[symbol] = " ".join(c["query"] for c in props["criteria"]["allOf"])
    assert any("success == false" in q for q in queries.values()), "no alert on failed runs"
    assert any("success == true" in q for q in queries.values()), "no alert on runs stopping"
    assert any("customMetrics" in q and "${lagMetric}" in q for q in queries.values()), "no alert on lag"
    assert any("customMetrics" in q and "${positionAgeMetric}" in q for q in queries.values()), (
        "no alert on position age")
    params = body(main()["modules"]["alerts"])["params"]
    assert params["alertEmail"] == "alertEmail"
    assert accessor(params["appInsightsId"]) == "monitoring.outputs.appInsightsId"


def test_metric_alerts_read_no_log_text_and_split_by_pipeline():
    """Lag and position age come from the exported metrics, one alert per pipeline, not from the
    run report's text in traces."""
    doc = module("alerts")
    for symbol, rule in resources_of(doc, "Microsoft.Insights/scheduledQueryRules").items():
        for criterion in body(rule)["properties"]["criteria"]["allOf"]:
            assert not criterion["query"].startswith("traces"), symbol
            if "customMetrics" in criterion["query"]:
                assert [d["name"] for d in criterion["dimensions"]] == ["pipeline"], symbol
                assert criterion["metricMeasureColumn"] in criterion["query"], symbol


def test_alert_queries_match_what_the_app_logs_and_exports():
    """The alerts read the host's request for the `drain` function and the app's metric names."""
    doc = module("alerts")
    function_name = param_default(doc, "drainFunctionName")
    text = (ROOT / "function_app.py").read_text()
    assert re.search(rf"^def {function_name}\(", text, re.M), (
        f"no function {function_name} in function_app.py")
    assert not re.search(r"function_name\(", text), "a renamed function would need drainFunctionName updated"
    telemetry = (ROOT / "shared" / "telemetry.py").read_text()
    for param in ("lagMetric", "positionAgeMetric"):
        name = param_default(doc, param)
        assert re.search(rf'create_(gauge|observable_gauge)\("{re.escape(name)}"', telemetry), (
            f"shared/telemetry.py exports no gauge {name}")
    assert "pipeline" in telemetry  # the attribute the alerts split by


# ------------------------------------------------------------------------------------------------
# Parameter files
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", sorted(PARAM_FILES))
def test_param_file_targets_main_and_sets_the_required_params(env):
    path = PARAM_FILES[env]
    using, values = parse_bicepparam(path)
    assert (path.parent / using).resolve() == MAIN.resolve()
    declared = main()["parameters"]
    assert set(values) <= set(declared), f"unknown params: {set(values) - set(declared)}"
    required = {name for name, spec in declared.items() if "default" not in spec}
    assert required <= set(values), f"required params not set: {required - set(values)}"
    assert values["environmentName"] == env
    assert values["namePrefix"] and re.fullmatch(r"[a-z][a-z0-9]{1,7}", values["namePrefix"])
    for name, value in values.items():
        allowed = decorators(main(), name).get("allowed")
        if allowed and isinstance(value, str):
            assert value in allowed, f"{name}={value!r} not in {allowed}"
    # The Mongo URI is never written in a params file: it comes from the environment (or is set
    # in Key Vault afterwards).
    uri = values.get("mongoUri")
    if uri is not None:
        assert uri["function"]["type"] == "readEnvironmentVariable"
        assert uri["function"]["parameters"].get("arg_2") == ""


def test_prod_uses_redundant_data_storage_and_vnet_integration():
    _, prod = parse_bicepparam(PARAM_FILES["prod"])
    assert prod["dataStorageSku"] in ("Standard_ZRS", "Standard_GZRS", "Standard_RAGZRS")
    assert prod["enableVnetIntegration"] is True
    assert prod.get("alwaysReadyInstances", 1) >= 1


def test_prod_denies_public_networks_on_the_data_and_entra_only_telemetry():
    _, prod = parse_bicepparam(PARAM_FILES["prod"])
    assert prod["denyPublicDataNetwork"] is True and prod["enableVnetIntegration"] is True
    assert prod["disableAppInsightsLocalAuth"] is True
    for doc_ in (main(),):
        assert param_default(doc_, "denyPublicDataNetwork") is False  # dev stays open by default
    subnets = main()["variables"]["dataSubnetIds"]["value"]["operator"]["operands"]
    assert subnets["condition"] == "enableVnetIntegration"
    assert [accessor(v) for v in subnets["true_value"]] == ["network.outputs.appSubnetId"]
    for name in ("lake", "checkpoints", "keyVault"):
        params = body(main()["modules"][name])["params"]
        assert params["denyPublicNetwork"] == "denyPublicDataNetwork", name
        assert params["allowedSubnetIds"] == "dataSubnetIds", name
        assert params["allowedIpRanges"] == "allowedIpRanges", name
    for file, rtype in (("lake", "Microsoft.Storage/storageAccounts"), ("checkpoints", "Microsoft.Storage/storageAccounts"),
                        ("keyvault", "Microsoft.KeyVault/vaults")):
        doc = module(file)
        acls = body(the_resource(doc, rtype)[1])["properties"]["networkAcls"]
        action = acls["defaultAction"]["operator"]
        assert action["type"] == "conditional" and action["operands"]["condition"] == "denyPublicNetwork"
        assert (action["operands"]["true_value"], action["operands"]["false_value"]) == ("Deny", "Allow")
        assert acls["virtualNetworkRules"]["loop_type"]["detail"]["array_name"] == "allowedSubnetIds"
        assert acls["ipRules"]["loop_type"]["detail"]["array_name"] == "allowedIpRanges"
        assert param_default(doc, "denyPublicNetwork") is False
    _, vnet = the_resource(module("network"), "Microsoft.Network/virtualNetworks")
    app_subnet = next(s["properties"] for s in body(vnet)["properties"]["subnets"] if s["name"] == "snet-app")
    assert {e["service"] for e in app_subnet["serviceEndpoints"]} == {"Microsoft.Storage", "Microsoft.KeyVault"}
    # Entra ID ingestion: the component can refuse keys, the app authenticates as its identity.
    _, ai = the_resource(module("monitoring"), "Microsoft.Insights/components")
    assert body(ai)["properties"]["DisableLocalAuth"] == "disableLocalAuth"
    assert body(main()["modules"]["monitoring"])["params"]["disableLocalAuth"] == "disableAppInsightsLocalAuth"
    assert app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=${identityClientId};Authorization=AAD")


def test_no_secrets_or_machine_paths_in_infra():
    for path in sorted(INFRA.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text()
        credentials = r"mongodb(\+srv)?://[^\s'\"/@]+:[^\s'\"/@]+@"
        assert not re.search(credentials, text), f"{path}: credentials in a URI"
        assert not re.search(r"AccountKey=[A-Za-z0-9+/]{20,}", text), f"{path}: an account key"
        assert not re.search(r"SharedAccessSignature=|[?&]sig=", text), f"{path}: a SAS"
        assert not re.search(r"(?<![\w.])/(home|root|tmp|work)/", text), f"{path}: a machine-specific path"


# ------------------------------------------------------------------------------------------------
# Azure Developer CLI (azd up)
# ------------------------------------------------------------------------------------------------

def simple_yaml(text: str) -> dict[str, Any]:
    """Nested mappings of `key: value` lines (all azure.yaml uses); comments ignored."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if value.strip():
            parent[key] = value.strip()
        else:
            parent[key] = {}
            stack.append((indent, parent[key]))
    return root


def test_azure_yaml_deploys_the_app_as_a_function_service():
    spec = simple_yaml((ROOT / "azure.yaml").read_text())
    assert spec["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    (name, service), = spec["services"].items()
    assert service == {"project": ".", "language": "python", "host": "function"}
    # azd finds the app by this tag.
    assert param_default(main(), "azdServiceName") == name
    assert body(main()["modules"]["functionApp"])["params"]["azdServiceName"] == "azdServiceName"
    assert param_default(module("functionapp"), "azdServiceName") == name
    assert f"SERVICE_{name.upper()}_NAME" in main()["outputs"]


def test_main_parameters_json_is_what_azd_reads():
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = main()["parameters"]
    assert set(values) <= set(declared), f"unknown params: {set(values) - set(declared)}"
    required = {name for name, spec in declared.items() if "default" not in spec}
    assert required <= set(values)
    assert values["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert values["location"]["value"] == "${AZURE_LOCATION}"
    # The Mongo URI only ever comes from the environment, never from a file in the repository.
    assert values["mongoUri"]["value"] == "${DEPLOY_MONGO_URI}"
    for output in ("AZURE_LOCATION", "AZURE_TENANT_ID", "AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME"):
        assert output in main()["outputs"], output


def test_environment_names_are_free_form_and_made_fit_for_resource_names():
    assert "allowed" not in decorators(main(), "environmentName")
    slug = json.dumps(main()["variables"]["environmentSlug"]["value"])
    assert "to_lower" in slug and "take" in slug
    assert main()["variables"]["baseName"]["value"] == "${namePrefix}-${environmentSlug}"
    assert main()["variables"]["defaultTags"]["value"]["environment"] == "environmentName"


# ------------------------------------------------------------------------------------------------
# checkov
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    script = ROOT / "scripts" / "checkov.sh"
    proc = subprocess.run(
        ["bash", str(script), "--framework", "bicep", "--skip-download", "--compact",
         "-d", str(INFRA), "-o", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=CHECKOV_TIMEOUT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    # checkov exits 1 when a check fails; the report says which, so read it either way.
    assert proc.returncode in (0, 1), f"checkov failed to run ({proc.returncode}):\n{proc.stderr[-4000:]}"
    start = proc.stdout.find("{") if proc.stdout.lstrip().startswith("{") else proc.stdout.find("[")
    report = json.loads(proc.stdout[start:])
    reports = report if isinstance(report, list) else [report]
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    assert len(bicep) == 1, f"no bicep report in checkov output: {proc.stdout[:2000]}"
    return bicep[0]


CHECKOV_PYCEP_PARSE = """
import sys
from pathlib import Path
from pycep import BicepParser
bad = []
for name in sys.argv[1:]:
    try:
        BicepParser().parse(file_path=Path(name))
    except Exception as exc:
        bad.append(f"{name}: {exc.__class__.__name__}: {str(exc)[:300]}")
print("\\n".join(bad))
sys.exit(1 if bad else 0)
"""


@pytest.mark.timeout(CHECKOV_TIMEOUT + 60)
def test_checkov_parses_every_bicep_file(checkov_report):
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, f"checkov could not parse: {summary}"
    # checkov has no checks for some resource types (identity, monitoring, alerts), so its report
    # cannot show that it read those files: parse each one with checkov's own (older) pycep.
    venv = Path(os.environ.get("CHECKOV_VENV", ROOT / ".local" / "checkov-venv"))
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", CHECKOV_PYCEP_PARSE, *map(str, BICEP_FILES)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"checkov's pycep cannot parse:\n{proc.stdout}{proc.stderr[-2000:]}"


@pytest.mark.timeout(CHECKOV_TIMEOUT + 60)
def test_checkov_has_no_failed_check_and_every_skip_has_a_reason(checkov_report):
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for c in checkov_report["results"]["failed_checks"]]
    assert not failed, "checkov findings (fix them or skip inline with a reason):\n" + "\n".join(failed)
    for c in checkov_report["results"]["skipped_checks"]:
        reason = (c.get("check_result") or {}).get("suppress_comment", "")
        assert reason and reason != "No comment provided" and len(reason.strip()) >= 20, (
            f"{c['check_id']} on {c['resource']} is skipped without a reason")
