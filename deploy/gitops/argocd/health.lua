-- Argo CD health of a batchcert.dev/BatchCertPool (resource.customizations.health.batchcert.dev_BatchCertPool).
--
-- Healthy      Ready=True, written for the object's current generation.
-- Degraded     Stalled=True: only a person can fix it (the reason and message say what).
-- Suspended    reconciliation paused by the batchcert.dev/paused annotation.
-- Progressing  anything else: no status yet, an older generation observed, or Reconciling=True
--              (a step the operator finishes by itself: creating, scaling, rotating, retrying).
--
-- Which reason needs a person is decided once, by the operator's reason registry
-- (operator/batchcert/reasons.py), and written as the kstatus conditions Stalled and Reconciling;
-- this script holds no list of reasons. Argo CD never runs it for an object being deleted
-- (gitops-engine answers "Progressing: Pending deletion" first), and opens only the base, table,
-- package and a reduced os library: no string or math functions here.
-- Checked with gitops-engine and gopher-lua by tools/consumers (tests/consumers).
local hs = {}
local status = obj.status
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local byType = {}
for _, condition in ipairs(status.conditions) do
  if condition.type ~= nil then
    byType[condition.type] = condition
  end
end

-- A condition counts only when written for the current generation (observedGeneration is
-- optional in the schema: absent means "not stated", and the status-level check above holds).
local function holds(condition)
  return condition ~= nil and condition.status == "True"
    and (condition.observedGeneration == nil or generation == nil or condition.observedGeneration == generation)
end

local function describe(condition)
  return (condition.reason or "") .. ": " .. (condition.message or "")
end

local stalled = byType["Stalled"]
if holds(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
local ready = byType["Ready"]
if holds(ready) then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
if ready ~= nil and ready.reason == "ReconcilePaused" then
  hs.status = "Suspended"
  hs.message = ready.message or "Reconciliation is paused"
  return hs
end

hs.status = "Progressing"
local reconciling = byType["Reconciling"]
if holds(reconciling) then
  hs.message = describe(reconciling)
elseif ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
