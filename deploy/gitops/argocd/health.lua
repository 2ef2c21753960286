-- Argo CD health of a batchcert.dev/BatchCertPool (resource.customizations.health.batchcert.dev_BatchCertPool).
--
-- Healthy      Ready=True for the object's current generation.
-- Suspended    reconciliation paused by the batchcert.dev/paused annotation.
-- Progressing  no status yet, an older generation observed, or every failing condition has a
--              reason the operator resolves by itself (creating, scaling, rotating, retrying).
-- Degraded     any other failing condition: a user action is needed; its message says which.
--
-- The transient reasons are the operator's own non-Warning reasons plus the Azure faults it
-- retries with backoff; anything else is Degraded, so a new failure reason can never hide as
-- "Progressing" forever. Source of truth: deploy/gitops/argocd/health.lua (tested by
-- tests/unit/test_argocd_health.py on status captured from the integration tests).
local transient = {
  Reconciling = true, PoolCreated = true, PoolNotReady = true, PoolUpdating = true,
  PoolRecreating = true, PoolDeleting = true, ScalingToZero = true, NodesAllocating = true,
  ExtensionTransitioning = true, RotationPropagating = true, CertificatePending = true,
  AzureThrottled = true, AzureUnavailable = true, AzureConflict = true,
}
local order = { "PoolReady", "CertificateReady", "NodesReady", "Ready" }

local hs = {}
local status = obj.status
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local byType = {}
for _, condition in ipairs(status.conditions) do
  if condition.type ~= nil then
    byType[condition.type] = condition
  end
end

local generation = obj.metadata and obj.metadata.generation
local ready = byType["Ready"]
local observed = status.observedGeneration
if ready ~= nil and ready.observedGeneration ~= nil then
  observed = ready.observedGeneration
end
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
if ready ~= nil and ready.reason == "ReconcilePaused" then
  hs.status = "Suspended"
  hs.message = ready.message or "Reconciliation is paused"
  return hs
end

for _, kind in ipairs(order) do
  local condition = byType[kind]
  if condition ~= nil and condition.status == "False" and not transient[condition.reason or ""] then
    hs.status = "Degraded"
    hs.message = kind .. " " .. (condition.reason or "") .. ": " .. (condition.message or "")
    return hs
  end
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
else
  hs.message = "Waiting for the Ready condition"
end
return hs
