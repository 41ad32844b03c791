-- Argo CD health check for mlrollouts.dev/ModelExperiment.
-- Argo CD runs this with the live object in the global `obj` and expects {status=..., message=...}.
-- A finished experiment is Healthy whether it promoted or ended Inconclusive (the champion keeps serving);
-- a rollback or an invalid spec is Degraded so the Application shows that someone has to look.
local hs = {}

local phaseToHealth = {
  Promoted = "Healthy",
  Inconclusive = "Healthy",
  Pending = "Progressing",
  Shadowing = "Progressing",
  Progressing = "Progressing",
  Paused = "Suspended",
  RolledBack = "Degraded",
  Invalid = "Degraded",
}

-- The sentence the operator wrote for its last decision, else the message of the Ready condition.
local function reasonOf(status)
  if status.analysis ~= nil and status.analysis.reason ~= nil and status.analysis.reason ~= "" then
    return status.analysis.reason
  end
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.type == "Ready" and condition.message ~= nil and condition.message ~= "" then
        return condition.message
      end
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local health = phaseToHealth[status.phase]
if health == nil then
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(status.phase)
  return hs
end

hs.status = health
local reason = reasonOf(status)
if reason ~= nil then
  hs.message = status.phase .. ": " .. reason
else
  hs.message = status.phase
end
return hs
