-- Argo CD health check for dynatrace.apitokens.io/ApiToken
-- (argocd-cm: resource.customizations.health.dynatrace.apitokens.io_ApiToken).
-- Reads the kstatus conditions the operator writes, with the same meaning Flux gives them:
--   Healthy      Ready=True, for the current spec generation
--   Degraded     Stalled=True: a problem someone must fix (bad spec, rejected by Dynatrace, policy,
--                connection); the message says what
--   Progressing  anything else: no status yet, a spec generation the operator has not handled yet,
--                Reconciling=True (creating, retrying after throttling or an outage), being deleted
-- Needs no Lua standard library (argocd-cm scripts run without them by default).
local hs = { status = "Progressing", message = "Waiting for the operator to handle the ApiToken" }

local metadata = obj.metadata or {}
if metadata.deletionTimestamp ~= nil then
  hs.message = "Pending deletion: the operator is deleting the token"
  return hs
end

local status = obj.status
if status == nil or status.conditions == nil then
  return hs
end

local conditions = {}
for _, condition in ipairs(status.conditions) do
  if condition.type ~= nil then
    conditions[condition.type] = condition
  end
end

local function describe(condition)
  local text = condition.message
  if text == nil or text == "" then
    return condition.reason or condition.type
  end
  if condition.reason ~= nil then
    return condition.reason .. ": " .. text
  end
  return text
end

local generation = metadata.generation
local observed = status.observedGeneration
if observed == nil and conditions.Ready ~= nil then
  observed = conditions.Ready.observedGeneration
end
if generation ~= nil and observed ~= nil and observed ~= generation then
  hs.message = "Waiting for the operator to handle generation " .. generation
    .. " (last handled: " .. observed .. ")"
  return hs
end

local stalled = conditions.Stalled
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local reconciling = conditions.Reconciling
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = describe(reconciling)
  return hs
end

local ready = conditions.Ready
if ready ~= nil and ready.status == "True" and (generation == nil or observed == generation) then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

if ready ~= nil then
  hs.message = describe(ready)
end
return hs
