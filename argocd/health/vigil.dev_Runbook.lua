-- Argo CD health of a vigil Runbook (vigil.dev/v1alpha1). A Runbook is configuration: it has no status
-- and no controller acting on it, and the API server validates it against the CRD schema on apply, so
-- an accepted Runbook is Healthy. (Without a health check Argo CD would show it with no health at all.)
local hs = {}
local steps = 0
if obj.spec ~= nil and obj.spec.steps ~= nil then
  steps = #obj.spec.steps
end
local mode = "auto"
if obj.spec ~= nil and obj.spec.mode ~= nil then
  mode = obj.spec.mode
end
hs.status = "Healthy"
hs.message = mode .. " runbook with " .. tostring(steps) .. " step(s)"
return hs
