-- Argo CD health of a RollbackAttempt (ai-operator.io/v1alpha1), the operator's
-- projection of one attempt's etcd record (crds/ai-operator.io_rollbackattempts.yaml;
-- the status is written by statusOf in src/integrations/rollback-attempts.ts).
--
--   Progressing  in flight: DegradationDetected, CandidateResolved, PRCreated,
--                RollbackMerged, a staging or approved AwaitingMergeApproval,
--                and an attempt the operator has not written a status on yet
--   Suspended    waits for a human: a production AwaitingMergeApproval with no
--                approval recorded, and a dry run's Abort (waits for a reset)
--   Healthy      RollbackComplete; Idle (ended without a rollback, or reset)
--   Degraded     Abort
--   Unknown      a phase this script does not know
--
-- Argo CD runs this on gopher-lua (Lua 5.1) with only the base, table and a safe
-- os library opened: no string library (no string.format, no s:sub()), so text
-- is joined with `..` alone. The message names the pull request (#42 <url>) and
-- the reason, then the operator's own message.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end

local phase = status.phase
local spec = obj.spec or {}
local labels = (obj.metadata or {}).labels or {}
-- SPEC §3: an unknown environment is treated as production.
local environment = spec.environment or labels["ai-operator.io/environment"] or "production"

local pr = nil
if status.pullRequest ~= nil and status.pullRequest.number ~= nil then
  pr = "PR #" .. tostring(status.pullRequest.number)
  if status.pullRequest.url ~= nil and status.pullRequest.url ~= "" then
    pr = pr .. " " .. status.pullRequest.url
  end
end

local target = nil
if status.candidate ~= nil then
  target = status.candidate.shortRevision or status.candidate.revision
end

local function condition(kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- "<what> [, PR #42 <url>] (<reason>): <the operator's message>"
local function say(health, what, withPr)
  local text = what
  if withPr and pr ~= nil then
    text = text .. ", " .. pr
  end
  if status.reason ~= nil and status.reason ~= "" then
    text = text .. " (" .. status.reason .. ")"
  end
  if status.message ~= nil and status.message ~= "" then
    text = text .. ": " .. status.message
  end
  hs.status = health
  hs.message = text
  return hs
end

local toward = ""
if target ~= nil then
  toward = " to " .. target
end

if phase == "DegradationDetected" then
  return say("Progressing", "Degradation confirmed; looking for a stable revision", false)
elseif phase == "CandidateResolved" then
  return say("Progressing", "Rolling back" .. toward .. "; opening a pull request", false)
elseif phase == "PRCreated" then
  return say("Progressing", "Rollback" .. toward .. " proposed; waiting for CI", true)
elseif phase == "AwaitingMergeApproval" then
  if environment ~= "staging" and status.approval == nil then
    local approved = condition("Approved")
    local what = "Waiting for an authorized approver (annotate ai-operator.io/approve)"
    if approved ~= nil and approved.status == "False" and approved.message ~= nil then
      what = what .. "; " .. approved.message
    end
    return say("Suspended", what, true)
  end
  if status.approval ~= nil and status.approval.approvedBy ~= nil then
    return say("Progressing", "Approved by " .. status.approval.approvedBy .. "; merging", true)
  end
  return say("Progressing", "CI is green; merging once every invariant passes", true)
elseif phase == "RollbackMerged" then
  return say("Progressing", "Rollback" .. toward .. " merged; waiting for the app to stay Healthy", true)
elseif phase == "RollbackComplete" then
  return say("Healthy", "Rolled back" .. toward, true)
elseif phase == "Idle" then
  return say("Healthy", "Ended without a rollback", true)
elseif phase == "Abort" then
  if status.reason == "DryRun" then
    return say("Suspended", "Dry run decided, no pull request opened; reset (ai-operator.io/reset) to allow a new attempt", false)
  end
  return say("Degraded", "Aborted", true)
end

hs.status = "Unknown"
hs.message = "unknown phase " .. tostring(phase)
return hs
