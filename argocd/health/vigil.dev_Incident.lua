-- Argo CD health of a vigil Incident (vigil.dev/v1alpha1), from status.phase.
--   Progressing  Open or Mitigating: diagnosed and being acted on
--   Suspended    AwaitingApproval: a runbook in approval mode waits for a person to annotate the Incident
--   Degraded     Escalated: the runbook ran out of steps (or was cancelled) without restoring the SLO
--   Healthy      Resolved
local hs = {}
local status = obj.status or {}
local phase = status.phase or "Open"
local plan = status.plan
local cause = ""
if status.diagnosis ~= nil and status.diagnosis.cause ~= nil then
  cause = " (" .. status.diagnosis.cause .. ")"
end

if phase == "Resolved" then
  hs.status = "Healthy"
  hs.message = "resolved" .. cause
elseif phase == "AwaitingApproval" then
  local annotation = "vigil.dev/approve"
  local runbook = "?"
  if plan ~= nil then
    runbook = plan.runbook or runbook
    if plan.spec ~= nil and plan.spec.approvalAnnotation ~= nil then
      annotation = plan.spec.approvalAnnotation
    end
  end
  hs.status = "Suspended"
  hs.message = "runbook " .. runbook .. " awaits approval" .. cause .. ": annotate this Incident " .. annotation .. "=true"
elseif phase == "Escalated" then
  hs.status = "Degraded"
  hs.message = "escalated" .. cause .. ": the runbook did not restore the SLO"
else
  local step = ""
  if plan ~= nil and plan.steps ~= nil and plan.current ~= nil then
    local current = plan.steps[plan.current + 1]
    if current ~= nil then
      step = ", step " .. current.name .. " " .. (current.state or "Pending")
    end
  end
  hs.status = "Progressing"
  hs.message = phase .. cause .. step
end
return hs
