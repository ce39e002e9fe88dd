-- Argo CD health of a RollbackPolicy (ai-operator.io/v1alpha1), whose status the
-- operator writes (src/reconcilers/rollback-policy.ts): conditions Ready and
-- ApplicationsRefused, matchedApplications, observedGeneration.
--
--   Progressing  no status yet, or a status of an older generation than the spec
--   Degraded     Ready is False
--   Suspended    spec.suspend: the policy starts no new attempts
--   Healthy      Ready is True. ApplicationsRefused=True stays Healthy, the
--                refusal leading the message: the refusal is the GITHUB_ORG rule
--                doing its job on other Applications' repoURLs, not this object
--                failing — and a Degraded policy would turn the Application that
--                deploys it Degraded (stalling its sync waves, and inviting a
--                rollback of that app if the operator watches it).
--
-- Argo CD runs this on gopher-lua (Lua 5.1) with only the base, table and a safe
-- os library opened: no string library, so text is joined with `..` alone.
local hs = {}
local status = obj.status
local spec = obj.spec or {}
local generation = (obj.metadata or {}).generation

local function condition(kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function described(c)
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to read generation " .. tostring(generation) .. " (status is of generation " .. tostring(status.observedGeneration) .. ")"
  return hs
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = described(ready)
  return hs
end
if ready.status ~= "True" then
  hs.status = "Progressing"
  hs.message = described(ready)
  return hs
end

local message = described(ready)
local refused = condition("ApplicationsRefused")
if refused ~= nil and refused.status == "True" then
  message = described(refused) .. "; " .. message
end
if spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true, no new attempts; " .. message
  return hs
end
hs.status = "Healthy"
hs.message = message
return hs
