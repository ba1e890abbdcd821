-- Argo CD health of a vigil ModelDeployment (vigil.dev/v1alpha1), from the status the operator writes.
--   Progressing  the operator has not yet observed this generation, or a rollout is under way
--   Degraded     Degraded=True (unschedulable, pods failing, invalid spec), an SLO is breached
--                (SLOMet=False), or an incident rolled it back: git asks for a revision that does not serve
--   Healthy      Available=True and no rollout in progress
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for vigil to observe generation " .. tostring(generation)
  return hs
end

-- The first rule whose condition has the given status decides; the order is the precedence.
local rules = {
  {"Degraded", "True", "Degraded"},
  {"RolledBack", "True", "Degraded"},
  {"SLOMet", "False", "Degraded"},
  {"Progressing", "True", "Progressing"},
  {"Available", "True", "Healthy"},
}
for _, rule in ipairs(rules) do
  local c = condition(status.conditions, rule[1])
  if c ~= nil and c.status == rule[2] then
    hs.status = rule[3]
    hs.message = describe(c)
    return hs
  end
end

local available = condition(status.conditions, "Available")
hs.status = "Progressing"
if available ~= nil then
  hs.message = describe(available)
else
  hs.message = "waiting for the first status"
end
return hs
